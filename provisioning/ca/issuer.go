package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
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
	// id-on-permanentIdentifier: RFC 4043, 2.
	OIDPermanentIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 3}
	// tcg-at-tpmManufacturer, tcg-at-tpmModel, tcg-at-tpmVersion: TCG EK Credential Profile 2.5, 3.1.2.
	OIDTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	OIDTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	OIDTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
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
	// Intermediates are the OEM's CAs between the issuing CA and Root, issuer first (oem.go).
	Intermediates []*x509.Certificate

	// Organization and CommonName fill the IDevID's subject beside serialNumber. An empty CommonName takes
	// the product name from the request. The IAK's subject is always empty (WebAuthn TPM attestation).
	Organization string
	CommonName   string
	// IAKNotAfter and IDevIDNotAfter bound the certificates; zero means UnboundedNotAfter.
	IAKNotAfter    time.Time
	IDevIDNotAfter time.Time
	// PermanentIDAssigner, when set, is the assigner OID written beside the board serial in the IAK's
	// permanentIdentifier (RFC 4043 2: the organisation that assigned the serial, typically the OEM's
	// private enterprise arc). Unset, the identifier carries the serial alone.
	PermanentIDAssigner asn1.ObjectIdentifier
	// IAKHardwareModuleName also writes the IDevID's hardwareModuleName into the IAK's SAN, for relying
	// parties that look for the 802.1AR name there. step-ca v0.30.2 then refuses the IAK certificate: its
	// parser reads hwSerialNum as a context tag [4] instead of RFC 4108's OCTET STRING ("failed parsing
	// HardwareModuleName"), so products that feed step-ca leave this off (docs/protocol.md).
	IAKHardwareModuleName bool

	Now  func() time.Time // default time.Now
	Rand io.Reader        // serial numbers; default crypto/rand

	// CRLDistributionPoints and OCSPServer, when set, go into every certificate issued (crl.go).
	CRLDistributionPoints, OCSPServer []string
}

// Board is who a certificate is for.
type Board struct {
	Serial  string
	Product string
	// TPM is what the station reported about the board's TPM (checked at round 1 by CheckTPMInfo); the IAK
	// certificate names the TPM with it.
	TPM provisioning.TPMInfo
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

// Chain is the issuing CA certificate, the intermediates and the root, DER.
func (is *Issuer) Chain() [][]byte {
	out := make([][]byte, 0, 2+len(is.Intermediates))
	out = append(out, is.CA.Raw)
	for _, c := range is.Intermediates {
		out = append(out, c.Raw)
	}
	return append(out, is.Root.Raw)
}

// IssueIAK signs the IAK certificate in the profile relying parties on TPM attestation check (W3C WebAuthn
// Level 2 8.3.1 "TPM Attestation Statement Certificate Requirements", which ACME device-attest-01 reuses;
// TCG EK Credential Profile 2.5 3.2.9 for the SAN): X.509 v3, an empty subject, a critical SAN holding a
// directoryName with tcg-at-tpmManufacturer ("id:" + TPM_PT_MANUFACTURER hex), tcg-at-tpmModel and
// tcg-at-tpmVersion ("id:" + TPM_PT_FIRMWARE_VERSION_1 hex) and a permanentIdentifier (RFC 4043) with the
// board serial; EKU tcg-kp-AIKCertificate only; CA false; keyUsage digitalSignature; policy
// verifiedTPMRestricted. The hardwareModuleName is added only with IAKHardwareModuleName.
func (is *Issuer) IssueIAK(pub crypto.PublicKey, b Board) ([]byte, error) {
	tmpl, err := is.base(pub, is.IAKNotAfter)
	if err != nil {
		return nil, err
	}
	attrs, err := TCGDeviceAttributes(b.TPM)
	if err != nil {
		return nil, fmt.Errorf("naming the TPM of board %q: %w", b.Serial, err)
	}
	names := []asn1.RawValue{}
	dn, err := directoryName(attrs)
	if err != nil {
		return nil, err
	}
	names = append(names, dn)
	pid, err := permanentIdentifierName(b.Serial, is.PermanentIDAssigner)
	if err != nil {
		return nil, err
	}
	names = append(names, pid)
	if is.IAKHardwareModuleName {
		hmn, err := hardwareModuleNameGN(b.Serial)
		if err != nil {
			return nil, err
		}
		names = append(names, hmn)
	}
	san, err := asn1.Marshal(names)
	if err != nil {
		return nil, err
	}
	// An empty subject makes the SAN the certificate's only name: RFC 5280 4.2.1.6 then requires it critical.
	tmpl.RawSubject = emptyName
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: san}}
	tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDAIKCertificate}
	tmpl.Policies = []x509.OID{mustOID(OIDVerifiedTPMRestricted)}
	return is.sign(tmpl, pub)
}

// IssueIDevID signs the IDevID certificate in the IEEE 802.1AR-2018 DevID profile (8.x): keyUsage
// digitalSignature, subject serialNumber, AKI, notAfter 99991231235959Z unless configured, policies
// verifiedTPMResidency and verifiedTPMFixed, hardwareModuleName in the SAN.
func (is *Issuer) IssueIDevID(pub crypto.PublicKey, b Board) ([]byte, error) {
	tmpl, err := is.base(pub, is.IDevIDNotAfter)
	if err != nil {
		return nil, err
	}
	hmn, err := hardwareModuleNameGN(b.Serial)
	if err != nil {
		return nil, err
	}
	san, err := asn1.Marshal([]asn1.RawValue{hmn})
	if err != nil {
		return nil, err
	}
	cn := is.CommonName
	if cn == "" {
		cn = b.Product
	}
	// The subject is never empty (it has serialNumber), so the SAN need not be critical (RFC 5280 4.2.1.6).
	tmpl.Subject = pkix.Name{Organization: nonEmpty(is.Organization), CommonName: cn, SerialNumber: b.Serial}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: false, Value: san}}
	tmpl.Policies = []x509.OID{mustOID(OIDVerifiedTPMResidency), mustOID(OIDVerifiedTPMFixed)}
	return is.sign(tmpl, pub)
}

// emptyName is an empty RDNSequence, the DER of an empty subject.
var emptyName = []byte{0x30, 0x00}

// base is what both profiles share: serial, validity, keyUsage, CA false, SKI.
func (is *Issuer) base(pub crypto.PublicKey, notAfter time.Time) (*x509.Certificate, error) {
	if is.CA == nil || is.Key == nil || is.Root == nil {
		return nil, errors.New("issuer has no CA certificate, key or root")
	}
	serial, err := randomSerial(is.rand())
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
	now := is.now().UTC().Truncate(time.Second)
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          keyID(spki),
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

// permanentIdentifier is RFC 4043 2: PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String
// OPTIONAL, assigner OBJECT IDENTIFIER OPTIONAL }.
type permanentIdentifier struct {
	IdentifierValue string                `asn1:"utf8,optional"`
	Assigner        asn1.ObjectIdentifier `asn1:"optional"`
}

// otherNameGN encodes a GeneralName otherName (RFC 5280 4.2.1.6: otherName [0] IMPLICIT OtherName;
// OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }) around an encoded value.
func otherNameGN(typ asn1.ObjectIdentifier, valueDER []byte) (asn1.RawValue, error) {
	typeID, err := asn1.Marshal(typ)
	if err != nil {
		return asn1.RawValue{}, err
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: valueDER})
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(typeID, value...)}, nil
}

// hardwareModuleNameGN is the otherName hardwareModuleName with hwType tcg-sv-tpm20 and the board serial.
func hardwareModuleNameGN(serial string) (asn1.RawValue, error) {
	hmn, err := asn1.Marshal(hardwareModuleName{HWType: OIDTPM20HWType, HWSerialNum: []byte(serial)})
	if err != nil {
		return asn1.RawValue{}, err
	}
	return otherNameGN(OIDHardwareModuleName, hmn)
}

// permanentIdentifierName is the otherName permanentIdentifier with the board serial and, when the
// product names one, the assigner.
func permanentIdentifierName(serial string, assigner asn1.ObjectIdentifier) (asn1.RawValue, error) {
	pid, err := asn1.Marshal(permanentIdentifier{IdentifierValue: serial, Assigner: assigner})
	if err != nil {
		return asn1.RawValue{}, err
	}
	return otherNameGN(OIDPermanentIdentifier, pid)
}

// directoryName is the GeneralName directoryName ([4], EXPLICIT because Name is a CHOICE) holding the TCG
// attributes as three single-valued RDNs of UTF8Strings, the layout of the Infineon and ST EK certificates
// (TCG EK Credential Profile 2.5 3.1.2 allows either this or one multi-valued RDN).
func directoryName(a TCGAttributes) (asn1.RawValue, error) {
	var rdns []asn1.RawValue
	for _, av := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{{OIDTPMManufacturer, a.Manufacturer}, {OIDTPMModel, a.Model}, {OIDTPMVersion, a.Version}} {
		val, err := asn1.MarshalWithParams(av.v, "utf8")
		if err != nil {
			return asn1.RawValue{}, err
		}
		atv, err := asn1.Marshal(struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{av.oid, asn1.RawValue{FullBytes: val}})
		if err != nil {
			return asn1.RawValue{}, err
		}
		rdns = append(rdns, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: atv})
	}
	name, err := asn1.Marshal(rdns)
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}, nil
}

// TCGAttributes name a TPM the way the TCG EK Credential Profile does (3.1.2, tcg-at-tpmManufacturer,
// tcg-at-tpmModel, tcg-at-tpmVersion).
type TCGAttributes struct {
	Manufacturer string // "id:" + TPM_PT_MANUFACTURER as 8 upper-case hex digits, e.g. "id:49465800" (Infineon)
	Model        string // the vendor's model text, e.g. "SLB 9670 TPM2.0"
	Version      string // "id:" + TPM_PT_FIRMWARE_VERSION_1 as 8 hex digits, e.g. "id:00070055"
}

// TCGDeviceAttributes derives the IAK certificate's TPM attributes from what the station reported:
// the manufacturer from TPM_PT_MANUFACTURER (ManufacturerID; a station that sends only the 4-character text
// gets it NUL-padded back, as the TPM encodes it), the model from the reported model or else the vendor
// strings (TPM_PT_VENDOR_STRING_1..4), the version from the major.minor of the firmware version.
func TCGDeviceAttributes(info provisioning.TPMInfo) (TCGAttributes, error) {
	id := info.ManufacturerID
	if id == 0 {
		m := info.Manufacturer
		if m == "" || len(m) > 4 {
			return TCGAttributes{}, fmt.Errorf("TPM manufacturer %q is not a TPM_PT_MANUFACTURER value", m)
		}
		var raw [4]byte
		copy(raw[:], m)
		id = binary.BigEndian.Uint32(raw[:])
	}
	model := info.Model
	if model == "" {
		model = info.VendorString
	}
	if model == "" {
		return TCGAttributes{}, errors.New("the TPM reported neither a model nor vendor strings")
	}
	// The model goes into a UTF8String of the IAK certificate: printable ASCII only, as the wire bounds ask
	// of every TPM string (and a TPM is not trusted to send text).
	for i := 0; i < len(model); i++ {
		if model[i] < 0x20 || model[i] > 0x7e {
			return TCGAttributes{}, fmt.Errorf("TPM model %q holds a byte outside printable ASCII", model)
		}
	}
	if len(model) > provisioning.MaxTPMStringLen {
		return TCGAttributes{}, fmt.Errorf("TPM model is %d bytes, at most %d", len(model), provisioning.MaxTPMStringLen)
	}
	var major, minor, build, patch uint32
	if n, err := fmt.Sscanf(info.Firmware, "%d.%d.%d.%d", &major, &minor, &build, &patch); err != nil || n != 4 || major > 0xFFFF || minor > 0xFFFF {
		return TCGAttributes{}, fmt.Errorf("TPM firmware version %q is not major.minor.build.patch", info.Firmware)
	}
	return TCGAttributes{
		Manufacturer: fmt.Sprintf("id:%08X", id),
		Model:        model,
		Version:      fmt.Sprintf("id:%08X", major<<16|minor),
	}, nil
}

// CheckTPMInfo checks what the CA can check of the TPM description a station sent, before it is written
// into an IAK certificate:
//
//   - the attributes derive (TCGDeviceAttributes): a manufacturer, a model, a firmware version;
//   - a ManufacturerID agrees with the manufacturer text (both are TPM_PT_MANUFACTURER);
//   - when the vendor-signed EK certificate names its TPM (a directoryName in its SAN), the manufacturer is
//     the EK certificate's (knownManufacturerQuirk lists the one tolerated disagreement). Model and version are not compared: vendors write marketing model names and the
//     firmware version of manufacture, which a field update changes, into EK certificates.
func CheckTPMInfo(info provisioning.TPMInfo, ek *x509.Certificate) error {
	attrs, err := TCGDeviceAttributes(info)
	if err != nil {
		return err
	}
	if info.ManufacturerID != 0 {
		var raw [4]byte
		binary.BigEndian.PutUint32(raw[:], info.ManufacturerID)
		text := strings.TrimSpace(strings.TrimRight(string(raw[:]), "\x00"))
		if text != strings.TrimSpace(info.Manufacturer) {
			return fmt.Errorf("TPM manufacturer %q does not match TPM_PT_MANUFACTURER %08X", info.Manufacturer, info.ManufacturerID)
		}
	}
	if ek == nil {
		return nil
	}
	ekAttrs, err := ParseTCGAttributes(ek)
	if err != nil || ekAttrs.Manufacturer == "" {
		return nil // the EK certificate does not name its TPM (Google, Intel RSA, some ST): nothing to compare
	}
	if !strings.EqualFold(ekAttrs.Manufacturer, attrs.Manufacturer) && !knownManufacturerQuirk(ekAttrs.Manufacturer, attrs.Manufacturer) {
		return fmt.Errorf("TPM manufacturer %s is not the %s of the EK certificate", attrs.Manufacturer, ekAttrs.Manufacturer)
	}
	return nil
}

// knownManufacturerQuirk tolerates the one EK-certificate manufacturer known to disagree with its own TPM:
// swtpm_setup (swtpm 0.7) writes IBM's PCI vendor ID "id:00001014" into every EK certificate it makes, while
// libtpms reports TPM_PT_MANUFACTURER "IBM" (0x49424D00, the TCG vendor registry's value), measured on the
// boards of fixtures/swtpm.go. The IAK certificate carries the TPM's own value.
func knownManufacturerQuirk(ekCert, tpm string) bool {
	return strings.EqualFold(ekCert, "id:00001014") && strings.EqualFold(tpm, "id:49424D00")
}

// sanNames returns the GeneralNames of a certificate's subjectAltName.
func sanNames(cert *x509.Certificate) ([]asn1.RawValue, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return nil, errors.New("malformed subjectAltName")
		}
		return names, nil
	}
	return nil, errors.New("no subjectAltName")
}

// otherNames returns the DER values (inside the [0] EXPLICIT) of the SAN's otherNames of type typ.
func otherNames(cert *x509.Certificate, typ asn1.ObjectIdentifier) ([][]byte, error) {
	names, err := sanNames(cert)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, gn := range names {
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 || !gn.IsCompound {
			continue
		}
		var typeID asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(gn.Bytes, &typeID)
		if err != nil || !typeID.Equal(typ) {
			continue
		}
		var value asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &value); err != nil || len(rest) != 0 || value.Class != asn1.ClassContextSpecific || value.Tag != 0 || !value.IsCompound {
			return nil, errors.New("malformed otherName")
		}
		out = append(out, value.Bytes)
	}
	return out, nil
}

// parseHardwareModuleName finds the hardwareModuleName otherName in a certificate's SAN and returns its hwType
// and hwSerialNum. Stations and tests use it to read back what the CA wrote.
func parseHardwareModuleName(cert *x509.Certificate) (asn1.ObjectIdentifier, []byte, error) {
	vals, err := otherNames(cert, OIDHardwareModuleName)
	if err != nil {
		return nil, nil, err
	}
	if len(vals) == 0 {
		return nil, nil, errors.New("no hardwareModuleName in the subjectAltName")
	}
	var hmn hardwareModuleName
	if rest, err := asn1.Unmarshal(vals[0], &hmn); err != nil || len(rest) != 0 {
		return nil, nil, errors.New("malformed hardwareModuleName")
	}
	return hmn.HWType, hmn.HWSerialNum, nil
}

// ParsePermanentIdentifier finds the permanentIdentifier otherName (RFC 4043) in a certificate's SAN and
// returns its identifierValue and assigner (nil when absent).
func ParsePermanentIdentifier(cert *x509.Certificate) (string, asn1.ObjectIdentifier, error) {
	vals, err := otherNames(cert, OIDPermanentIdentifier)
	if err != nil {
		return "", nil, err
	}
	if len(vals) == 0 {
		return "", nil, errors.New("no permanentIdentifier in the subjectAltName")
	}
	var pid permanentIdentifier
	if rest, err := asn1.Unmarshal(vals[0], &pid); err != nil || len(rest) != 0 {
		return "", nil, errors.New("malformed permanentIdentifier")
	}
	return pid.IdentifierValue, pid.Assigner, nil
}

// ParseTCGAttributes reads tcg-at-tpmManufacturer, tpmModel and tpmVersion from the directoryNames of a
// certificate's SAN (an IAK certificate of ours or a vendor's EK certificate), in single- or multi-valued
// RDNs, UTF8String or PrintableString.
func ParseTCGAttributes(cert *x509.Certificate) (TCGAttributes, error) {
	names, err := sanNames(cert)
	if err != nil {
		return TCGAttributes{}, err
	}
	var a TCGAttributes
	found := false
	for _, gn := range names {
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 4 || !gn.IsCompound {
			continue
		}
		var rdns pkix.RDNSequence
		if rest, err := asn1.Unmarshal(gn.Bytes, &rdns); err != nil || len(rest) != 0 {
			return TCGAttributes{}, errors.New("malformed directoryName")
		}
		for _, rdn := range rdns {
			for _, atv := range rdn {
				v, ok := atv.Value.(string)
				switch {
				case !ok:
					continue
				case atv.Type.Equal(OIDTPMManufacturer):
					a.Manufacturer, found = v, true
				case atv.Type.Equal(OIDTPMModel):
					a.Model, found = v, true
				case atv.Type.Equal(OIDTPMVersion):
					a.Version, found = v, true
				}
			}
		}
	}
	if !found {
		return TCGAttributes{}, errors.New("no TCG TPM attributes in the subjectAltName")
	}
	return a, nil
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
