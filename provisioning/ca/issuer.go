package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// Object identifiers the issuer writes.
var (
	// tcg-kp-AIKCertificate: TCG EK Credential Profile 2.0, 3.2.8 / TCG Keys for Device Identity 8.1.
	OIDAIKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 3}
	// tcg-kp-EKCertificate: TCG EK Credential Profile 2.0, 3.2.8 (checked on EK certificates, never issued).
	OIDEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
	// verifiedTPMResidency, verifiedTPMFixed, verifiedTPMRestricted: TCG "TPM 2.0 Keys for Device Identity and
	// Attestation" 1.00 r2, 8.7 (certificate policies an issuer asserts after checking TPM2_Certify evidence).
	OIDVerifiedTPMResidency  = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 1}
	OIDVerifiedTPMFixed      = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 2}
	OIDVerifiedTPMRestricted = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 3}
	// id-on-hardwareModuleName: RFC 4108, 5.
	OIDHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}
	// tcg-sv-tpm20: TCG EK Credential Profile 2.0, 3.2.7 (hwType of a TPM 2.0 in hardwareModuleName).
	OIDTPM20HWType = asn1.ObjectIdentifier{2, 23, 133, 1, 2}
	// subjectAltName: RFC 5280, 4.2.1.6.
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// UnboundedNotAfter is the notAfter an IDevID carries by default: "no well-defined expiration date"
// (RFC 5280 4.1.2.5, IEEE 802.1AR-2018 8.5), encoded as GeneralizedTime 99991231235959Z.
var UnboundedNotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Issuer signs IAK and IDevID certificates with the issuing CA.
type Issuer struct {
	CA   *x509.Certificate // the issuing CA certificate
	Key  crypto.Signer     // its private key
	Root *x509.Certificate // the root the issuing CA chains to (sent back in Certificates.Chain)

	// Organization and CommonName fill the subject of both certificates beside serialNumber. An empty
	// CommonName takes the product name from the request.
	Organization string
	CommonName   string
	// IAKNotAfter and IDevIDNotAfter bound the certificates; zero means UnboundedNotAfter.
	IAKNotAfter    time.Time
	IDevIDNotAfter time.Time

	Now  func() time.Time // default time.Now
	Rand io.Reader        // serial numbers; default crypto/rand

	// CRLDistributionPoints and OCSPServer, when set, go into every certificate issued (crl.go).
	CRLDistributionPoints, OCSPServer []string
}

// Board is who a certificate is for.
type Board struct {
	Serial  string
	Product string
}

func (is *Issuer) now() time.Time {
	if is.Now != nil {
		return is.Now()
	}
	return clock.Now()
}

func (is *Issuer) rand() io.Reader {
	if is.Rand != nil {
		return is.Rand
	}
	return rand.Reader
}

// Chain is the issuing CA certificate followed by the root, DER.
func (is *Issuer) Chain() [][]byte {
	return [][]byte{is.CA.Raw, is.Root.Raw}
}

// IssueIAK signs the IAK certificate: EKU tcg-kp-AIKCertificate, policy verifiedTPMRestricted, keyUsage
// digitalSignature, the board in the subject and as hardwareModuleName in the SAN.
func (is *Issuer) IssueIAK(pub crypto.PublicKey, b Board) ([]byte, error) {
	tmpl, err := is.template(pub, b, is.IAKNotAfter)
	if err != nil {
		return nil, err
	}
	tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDAIKCertificate}
	tmpl.Policies = []x509.OID{mustOID(OIDVerifiedTPMRestricted)}
	return is.sign(tmpl, pub)
}

// IssueIDevID signs the IDevID certificate in the IEEE 802.1AR-2018 DevID profile (8.x): keyUsage
// digitalSignature, subject serialNumber, AKI, notAfter 99991231235959Z unless configured, policies
// verifiedTPMResidency and verifiedTPMFixed, hardwareModuleName in the SAN.
func (is *Issuer) IssueIDevID(pub crypto.PublicKey, b Board) ([]byte, error) {
	tmpl, err := is.template(pub, b, is.IDevIDNotAfter)
	if err != nil {
		return nil, err
	}
	tmpl.Policies = []x509.OID{mustOID(OIDVerifiedTPMResidency), mustOID(OIDVerifiedTPMFixed)}
	return is.sign(tmpl, pub)
}

func (is *Issuer) template(pub crypto.PublicKey, b Board, notAfter time.Time) (*x509.Certificate, error) {
	if is.CA == nil || is.Key == nil || is.Root == nil {
		return nil, errors.New("issuer has no CA certificate, key or root")
	}
	serial, err := randomSerial(is.rand())
	if err != nil {
		return nil, err
	}
	san, err := hardwareModuleNameSAN(b.Serial)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	if notAfter.IsZero() {
		notAfter = UnboundedNotAfter
	}
	cn := is.CommonName
	if cn == "" {
		cn = b.Product
	}
	now := is.now().UTC().Truncate(time.Second)
	return &x509.Certificate{
		SerialNumber: serial,
		// The subject is never empty (it has serialNumber), so the SAN need not be critical (RFC 5280 4.2.1.6).
		Subject: pkix.Name{
			Organization: nonEmpty(is.Organization),
			CommonName:   cn,
			SerialNumber: b.Serial,
		},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          keyID(spki),
		ExtraExtensions:       []pkix.Extension{{Id: oidSubjectAltName, Critical: false, Value: san}},
		CRLDistributionPoints: is.CRLDistributionPoints,
		OCSPServer:            is.OCSPServer,
	}, nil
}

func (is *Issuer) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.CreateCertificate(is.rand(), tmpl, is.CA, pub, is.Key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	return der, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// hardwareModuleName is RFC 4108 5: HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER,
// hwSerialNum OCTET STRING }.
type hardwareModuleName struct {
	HWType      asn1.ObjectIdentifier
	HWSerialNum []byte
}

// hardwareModuleNameSAN encodes a SubjectAltName holding one otherName (RFC 5280 4.2.1.6: GeneralName
// otherName [0] IMPLICIT OtherName; OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }) whose
// value is a HardwareModuleName with hwType tcg-sv-tpm20 and the board serial.
func hardwareModuleNameSAN(serial string) ([]byte, error) {
	hmn, err := asn1.Marshal(hardwareModuleName{HWType: OIDTPM20HWType, HWSerialNum: []byte(serial)})
	if err != nil {
		return nil, err
	}
	typeID, err := asn1.Marshal(OIDHardwareModuleName)
	if err != nil {
		return nil, err
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: hmn})
	if err != nil {
		return nil, err
	}
	otherName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(typeID, value...)}
	return asn1.Marshal([]asn1.RawValue{otherName})
}

// parseHardwareModuleName finds the hardwareModuleName otherName in a certificate's SAN and returns its hwType
// and hwSerialNum. Stations and tests use it to read back what the CA wrote.
func parseHardwareModuleName(cert *x509.Certificate) (asn1.ObjectIdentifier, []byte, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return nil, nil, errors.New("malformed subjectAltName")
		}
		for _, gn := range names {
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 || !gn.IsCompound {
				continue
			}
			var typeID asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(gn.Bytes, &typeID)
			if err != nil || !typeID.Equal(OIDHardwareModuleName) {
				continue
			}
			var value asn1.RawValue
			if rest, err = asn1.Unmarshal(rest, &value); err != nil || len(rest) != 0 || value.Class != asn1.ClassContextSpecific || value.Tag != 0 {
				return nil, nil, errors.New("malformed otherName")
			}
			var hmn hardwareModuleName
			if rest, err = asn1.Unmarshal(value.Bytes, &hmn); err != nil || len(rest) != 0 {
				return nil, nil, errors.New("malformed hardwareModuleName")
			}
			return hmn.HWType, hmn.HWSerialNum, nil
		}
	}
	return nil, nil, errors.New("no hardwareModuleName in the subjectAltName")
}

func mustOID(o asn1.ObjectIdentifier) x509.OID {
	ints := make([]uint64, len(o))
	for i, v := range o {
		ints[i] = uint64(v)
	}
	oid, err := x509.OIDFromInts(ints)
	if err != nil {
		panic(err)
	}
	return oid
}

// keyID is RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING (not of the whole SPKI).
func keyID(spki []byte) []byte {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		sum := sha1.Sum(spki)
		return sum[:]
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return sum[:]
}
