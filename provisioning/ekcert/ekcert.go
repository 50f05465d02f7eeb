// Package ekcert owns TPM 2.0 Endorsement Key certificates on both ends of tpmline: it turns the bytes a
// TPM NV index or an operator's file holds into clean DER (Normalise), parses the certificate and the TPM
// identity in its subject alternative name (Parse), verifies it against configured TPM vendor roots as
// the upstream CA must before it trusts an EK (Verifier), checks that a TPM's EK public area is the
// certificate's key (MatchPublic), loads vendor CA files (LoadCertificates) and renders a human verdict
// for the CA operator (Describe).
//
// Errors wrap one of the sentinels ErrInvalid, ErrUntrusted, ErrNotEK or ErrMismatch so that the CA can map
// them to protocol error codes with errors.Is.
package ekcert

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Sentinel errors. Every error from Normalise, Parse, Verify and MatchPublic wraps one of the first four.
var (
	// ErrInvalid: the bytes are not a certificate this package understands (encoding, size, DER, TPM 1.2).
	ErrInvalid = errors.New("invalid EK certificate")
	// ErrUntrusted: no chain to a configured TPM vendor root, an unhandled critical extension, or outside
	// its validity period.
	ErrUntrusted = errors.New("untrusted EK certificate")
	// ErrNotEK: the certificate is not an EK certificate (no tcg-kp-EKCertificate EKU, or a CA).
	ErrNotEK = errors.New("not an EK certificate")
	// ErrMismatch: the EK public area differs from the certificate's key.
	ErrMismatch = errors.New("EK public key does not match the EK certificate")
	// ErrTPM12 is wrapped together with ErrInvalid for TPM 1.2 EK certificates, which are out of scope.
	ErrTPM12 = errors.New("TPM 1.2 EK certificate, not TPM 2.0")
)

// Object identifiers.
var (
	// TCG EK Credential Profile for TPM Family 2.0 (v2.5), 3.2.9 Subject Alternative Name attributes.
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1} // tcg-at-tpmManufacturer
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2} // tcg-at-tpmModel
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3} // tcg-at-tpmVersion
	// TCG EK Credential Profile 3.2.16 Extended Key Usage.
	oidEKCertificateEKU = asn1.ObjectIdentifier{2, 23, 133, 8, 1} // tcg-kp-EKCertificate
	// RFC 5280 4.2.1.6.
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// RFC 8017 A.1 / RFC 4055 1.2: id-RSAES-OAEP, the key algorithm of TPM 1.2 EKs (TCG Credential
	// Profiles for TPM 1.2, 3.2.7: OAEP with the label "TCPA").
	oidRSAESOAEP = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
)

// maxSANString bounds a TPM identity attribute. TCG EK Credential Profile gives tpmModel no bound; 128
// is ten times any model name seen.
const maxSANString = 128

// Certificate is a parsed TPM 2.0 EK certificate.
type Certificate struct {
	Raw     []byte            // the input exactly as given
	DER     []byte            // the certificate after Normalise
	X509    *x509.Certificate // parsed from DER
	Applied []Normalisation   // what Normalise removed from Raw

	// From the directoryName in the subject alternative name (TCG EK Credential Profile 3.2.9).
	Manufacturer   string // human vendor name from the TCG vendor registry, "" when unknown
	ManufacturerID string // tcg-at-tpmManufacturer as 8 upper-case hex digits, e.g. "49465800"
	Model          string // tcg-at-tpmModel, e.g. "SLB 9670 TPM2.0"
	Version        string // tcg-at-tpmVersion as written, e.g. "id:00490004"

	// sanOnlyDirName records that the SAN extension holds nothing but one directoryName, the one shape
	// of critical SAN the Verifier tolerates.
	sanOnlyDirName bool
}

// ManufacturerCode is ManufacturerID as the 32-bit value TPM_PT_MANUFACTURER reports; 0 when absent.
func (c *Certificate) ManufacturerCode() uint32 {
	v, err := strconv.ParseUint(c.ManufacturerID, 16, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

// Parse normalises raw (see Normalise), parses the certificate and reads the TPM identity from its
// subject alternative name. It refuses, with ErrInvalid, anything Go's x509 cannot parse, TPM 1.2 EK
// certificates (RSAES-OAEP key; also ErrTPM12), keys other than RSA and ECDSA, and a subject alternative
// name that is malformed or whose TPM attributes are not printable strings.
func Parse(raw []byte) (*Certificate, error) {
	der, applied, err := Normalise(raw)
	if err != nil {
		return nil, err
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch x.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		alg, _ := spkiAlgorithm(x.RawSubjectPublicKeyInfo)
		if alg.Equal(oidRSAESOAEP) {
			return nil, fmt.Errorf("%w: %w: its key is RSAES-OAEP (TCPA); TPM 1.2 EKs are not supported", ErrInvalid, ErrTPM12)
		}
		return nil, fmt.Errorf("%w: EK key algorithm %v (OID %v) is neither RSA nor ECC", ErrInvalid, x.PublicKeyAlgorithm, alg)
	}
	c := &Certificate{Raw: raw, DER: der, X509: x, Applied: applied}
	if err := c.readSAN(); err != nil {
		return nil, err
	}
	return c, nil
}

func spkiAlgorithm(spki []byte) (asn1.ObjectIdentifier, error) {
	var s struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &s); err != nil {
		return nil, err
	}
	return s.Algorithm.Algorithm, nil
}

// readSAN fills the TPM identity fields. EK certificates carry the identity as one directoryName in the
// SAN, either one multi-valued RDN or one RDN per attribute, as UTF8String or PrintableString.
func (c *Certificate) readSAN() error {
	var ext *pkix.Extension
	for i := range c.X509.Extensions {
		if c.X509.Extensions[i].Id.Equal(oidSubjectAltName) {
			ext = &c.X509.Extensions[i]
			break
		}
	}
	if ext == nil {
		return nil
	}
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(ext.Value, &names)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("%w: malformed subject alternative name", ErrInvalid)
	}
	dirNames, others := 0, 0
	for _, n := range names {
		// GeneralName directoryName is [4] EXPLICIT Name (RFC 5280 4.2.1.6).
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 || !n.IsCompound {
			others++
			continue
		}
		dirNames++
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(n.Bytes, &rdns)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: malformed directoryName in the subject alternative name", ErrInvalid)
		}
		if err := c.readTPMAttributes(rdns); err != nil {
			return err
		}
	}
	c.sanOnlyDirName = dirNames == 1 && others == 0
	return nil
}

func (c *Certificate) readTPMAttributes(rdns pkix.RDNSequence) error {
	for _, set := range rdns {
		for _, atv := range set {
			var dst *string
			var name string
			switch {
			case atv.Type.Equal(oidTPMManufacturer):
				dst, name = &c.ManufacturerID, "tpmManufacturer"
			case atv.Type.Equal(oidTPMModel):
				dst, name = &c.Model, "tpmModel"
			case atv.Type.Equal(oidTPMVersion):
				dst, name = &c.Version, "tpmVersion"
			default:
				continue
			}
			s, ok := atv.Value.(string)
			if !ok {
				return fmt.Errorf("%w: SAN %s is not a string", ErrInvalid, name)
			}
			if len(s) == 0 || len(s) > maxSANString || strings.IndexFunc(s, notPrintable) >= 0 {
				return fmt.Errorf("%w: SAN %s %.40q is empty, over %d bytes or not printable", ErrInvalid, name, s, maxSANString)
			}
			if *dst != "" {
				return fmt.Errorf("%w: SAN holds %s twice", ErrInvalid, name)
			}
			*dst = s
		}
	}
	if c.ManufacturerID == "" {
		return nil
	}
	code, err := parseManufacturer(c.ManufacturerID)
	if err != nil {
		return fmt.Errorf("%w: SAN tpmManufacturer %q: %v", ErrInvalid, c.ManufacturerID, err)
	}
	c.ManufacturerID = fmt.Sprintf("%08X", code)
	c.Manufacturer = VendorName(code)
	return nil
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// parseManufacturer reads "id:XXXXXXXX", the form TCG EK Credential Profile 3.2.9 gives tpmManufacturer
// (the TPM_PT_MANUFACTURER value as 8 hex digits).
func parseManufacturer(s string) (uint32, error) {
	hex, ok := strings.CutPrefix(s, "id:")
	if !ok {
		hex, ok = strings.CutPrefix(s, "ID:")
	}
	if !ok || len(hex) != 8 {
		return 0, errors.New("not of the form id:<8 hex digits>")
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return 0, errors.New("not of the form id:<8 hex digits>")
	}
	return uint32(v), nil
}

// vendors is the TCG TPM Vendor ID Registry (Family 1.2 and 2.0, Version 1.07), keyed by the
// TPM_PT_MANUFACTURER value: four ASCII characters, NUL or space padded.
var vendors = map[uint32]string{
	0x414D4400: "AMD",                    // "AMD\0"
	0x414E5400: "Ant Group",              // "ANT\0"
	0x41544D4C: "Atmel",                  // "ATML"
	0x4252434D: "Broadcom",               // "BRCM"
	0x4353434F: "Cisco",                  // "CSCO"
	0x464C5953: "Flyslice Technologies",  // "FLYS"
	0x524F4343: "Fuzhou Rockchip",        // "ROCC"
	0x474F4F47: "Google",                 // "GOOG"
	0x48504900: "HPI",                    // "HPI\0"
	0x48504500: "HPE",                    // "HPE\0"
	0x48495349: "Huawei",                 // "HISI"
	0x49424D00: "IBM",                    // "IBM\0" (also the simulator and swtpm's TPM_PT_MANUFACTURER)
	0x49465800: "Infineon",               // "IFX\0"
	0x494E5443: "Intel",                  // "INTC"
	0x4C454E00: "Lenovo",                 // "LEN\0"
	0x4D534654: "Microsoft",              // "MSFT"
	0x4E534D20: "National Semiconductor", // "NSM "
	0x4E545A00: "Nationz",                // "NTZ\0"
	0x4E534700: "NSING",                  // "NSG\0"
	0x4E544300: "Nuvoton",                // "NTC\0"
	0x51434F4D: "Qualcomm",               // "QCOM"
	0x53454345: "SecEdge",                // "SECE"
	0x534D5343: "SMSC",                   // "SMSC"
	0x53544D20: "STMicroelectronics",     // "STM "
	0x534D534E: "Samsung",                // "SMSN"
	0x534E5300: "Sinosun",                // "SNS\0"
	0x54584E00: "Texas Instruments",      // "TXN\0"
	0x57454300: "Winbond",                // "WEC\0"
	0x5345414C: "Wisekey",                // "SEAL"
	0x00001014: "IBM (swtpm)",            // swtpm_setup writes IBM's PCI vendor ID 0x1014 as id:00001014
}

// VendorName is the TPM vendor's name for a TPM_PT_MANUFACTURER value, or "" when the registry does not
// list it.
func VendorName(code uint32) string { return vendors[code] }
