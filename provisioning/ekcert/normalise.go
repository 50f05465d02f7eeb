package ekcert

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxInputSize bounds what Normalise and Parse accept. A TPM's NV_INDEX_MAX is 2048 bytes on most chips
// (tpm-facts.md) and ST33 pads its EK certificate to 1600; a PEM file of a large certificate with
// openssl's text dump in front stays well under this.
const MaxInputSize = 16 << 10

// Normalisation names one way the raw bytes differed from a bare DER certificate.
type Normalisation string

// The encodings Normalise undoes, in the order they are applied.
const (
	// NormPEM: the input was PEM text (possibly with CRLF line ends or text before the block).
	NormPEM Normalisation = "pem"
	// NormNVHeader: the TCG PC Client stored-certificate header 10 01 00 <size16> 10 02 preceded the DER
	// (TCG PC Client Specific Implementation Specification for Conventional BIOS 1.21, 7.4.5:
	// TCG_PCCLIENT_STORED_CERT tag 0x1001, certType 0 = full, certSize; TCG_FULL_CERT tag 0x1002), or its
	// short form 10 01 00 <size16> with the DER right after. Either way the size must be the certificate's.
	NormNVHeader Normalisation = "nv-header"
	// NormOctetString: the certificate was wrapped in a DER OCTET STRING.
	NormOctetString Normalisation = "octet-string"
	// NormPadding: 0xFF or 0x00 bytes followed the certificate (NV index larger than the certificate;
	// ST33 pads to 1600 bytes).
	NormPadding Normalisation = "padding"
)

// DER identifier octets (ITU-T X.690 8.1.2, universal class).
const (
	tagOctetString = 0x04
	tagSequence    = 0x30 // SEQUENCE, constructed
)

// TCG PC Client stored-certificate header (see NormNVHeader).
const (
	nvTagStoredCert = 0x1001 // TCG_TAG_PCCLIENT_STORED_CERT
	nvTagFullCert   = 0x1002 // TCG_TAG_PCCLIENT_FULL_CERT
	nvCertTypeFull  = 0x00   // certType: full certificate
	nvHeaderLen     = 7      // tag(2) certType(1) certSize(2) fullCert tag(2)
	// nvShortHeaderLen: the same header without the TCG_FULL_CERT tag; certSize is then the DER's size.
	nvShortHeaderLen = 5
)

// Normalise turns what a TPM NV index or an operator's file holds into the bare DER of one certificate,
// and reports which encodings it removed. It undoes, in this order: PEM (the one CERTIFICATE block; text
// and other block types around it are ignored, a second CERTIFICATE block is refused), the TCG NV
// header, an OCTET STRING wrapper, and trailing padding made of one repeated byte, 0x00 or 0xFF. Any
// other byte after the certificate, a truncated or indefinite-length encoding, an NV header whose size
// does not match the certificate, empty input and input over MaxInputSize are refused with ErrInvalid.
// The returned slice is a fresh copy.
func Normalise(raw []byte) (der []byte, applied []Normalisation, err error) {
	switch {
	case len(raw) == 0:
		return nil, nil, fmt.Errorf("%w: EK certificate is empty", ErrInvalid)
	case len(raw) > MaxInputSize:
		return nil, nil, fmt.Errorf("%w: EK certificate input is %d bytes, over the %d-byte limit", ErrInvalid, len(raw), MaxInputSize)
	}
	data := raw
	// PEM when the armour comes after nothing but text: DER and NV blobs start with bytes no text has
	// (0x82 after the SEQUENCE tag is not valid UTF-8), so an embedded marker cannot switch modes.
	if i := bytes.Index(data, []byte("-----BEGIN ")); i >= 0 && isText(data[:i]) {
		block, err := decodePEM(data)
		if err != nil {
			return nil, nil, err
		}
		applied = append(applied, NormPEM)
		data = block
		if len(data) == 0 {
			return nil, applied, fmt.Errorf("%w: PEM CERTIFICATE block is empty", ErrInvalid)
		}
	} else if !looksBinary(data) {
		return nil, nil, fmt.Errorf("%w: EK certificate is neither DER, PEM nor a TCG NV blob (first byte %#02x)", ErrInvalid, data[0])
	}

	body, declared := data, -1
	switch {
	case isNVHeader(data):
		applied = append(applied, NormNVHeader)
		size := int(data[3])<<8 | int(data[4])
		if size < 2 || 5+size > len(data) {
			return nil, applied, fmt.Errorf("%w: TCG NV header declares %d bytes but %d follow it", ErrInvalid, size, len(data)-5)
		}
		body, declared = data[nvHeaderLen:], size-2 // certSize counts the TCG_FULL_CERT tag
	case isShortNVHeader(data):
		applied = append(applied, NormNVHeader)
		size := int(data[3])<<8 | int(data[4])
		if 5+size > len(data) {
			return nil, applied, fmt.Errorf("%w: TCG NV header declares %d bytes but %d follow it", ErrInvalid, size, len(data)-5)
		}
		body, declared = data[nvShortHeaderLen:], size
	}
	cert, rest, wapplied, err := unwrap(body)
	applied = append(applied, wapplied...)
	if err != nil {
		return nil, applied, err
	}
	if used := len(body) - len(rest); declared >= 0 && used != declared {
		return nil, applied, fmt.Errorf("%w: TCG NV header declares a %d-byte certificate but the certificate is %d bytes", ErrInvalid, declared, used)
	}
	if err := checkPadding(rest); err != nil {
		return nil, applied, err
	}
	if len(rest) > 0 {
		applied = append(applied, NormPadding)
	}
	return bytes.Clone(cert), applied, nil
}

// isText reports whether b is UTF-8 text without control characters other than white space.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7F {
			return false
		}
	}
	return true
}

// looksBinary reports whether data starts like one of the binary forms (and so is not PEM text).
func looksBinary(data []byte) bool {
	return data[0] == tagSequence || data[0] == tagOctetString || isNVHeader(data) || isShortNVHeader(data)
}

// isShortNVHeader reports the header without the TCG_FULL_CERT tag, 10 01 00 <size16> and the DER right
// after it, as the Platform Firmware Profile's EK NV layout is read by go-attestation and written by our
// simulated manufacturer (fixtures.EncodeEKCertNV).
func isShortNVHeader(data []byte) bool {
	return len(data) > nvShortHeaderLen &&
		int(data[0])<<8|int(data[1]) == nvTagStoredCert &&
		data[2] == nvCertTypeFull &&
		data[nvShortHeaderLen] == tagSequence
}

func isNVHeader(data []byte) bool {
	return len(data) >= nvHeaderLen &&
		int(data[0])<<8|int(data[1]) == nvTagStoredCert &&
		data[2] == nvCertTypeFull &&
		int(data[5])<<8|int(data[6]) == nvTagFullCert
}

// decodePEM returns the bytes of the only CERTIFICATE block in text.
func decodePEM(text []byte) ([]byte, error) {
	var found []byte
	n := 0
	for rest := text; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" && block.Type != "X509 CERTIFICATE" {
			continue
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("%w: PEM CERTIFICATE block has headers (encrypted or not a plain certificate)", ErrInvalid)
		}
		n++
		found = block.Bytes
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("%w: no valid PEM CERTIFICATE block in the EK certificate text", ErrInvalid)
	case 1:
		return found, nil
	default:
		return nil, fmt.Errorf("%w: %d PEM CERTIFICATE blocks where one EK certificate was expected", ErrInvalid, n)
	}
}

// unwrap takes the certificate SEQUENCE (optionally inside an OCTET STRING) from the front of data and
// returns it with whatever follows. encoding/asn1 reads the elements: it refuses indefinite lengths,
// non-minimal length encodings and truncation, which is what DER (ITU-T X.690 10.1) requires.
func unwrap(data []byte) (cert, rest []byte, applied []Normalisation, err error) {
	if len(data) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: no certificate bytes", ErrInvalid)
	}
	if data[0] == tagOctetString {
		applied = append(applied, NormOctetString)
		var wrapper asn1.RawValue
		rest, err := asn1.Unmarshal(data, &wrapper)
		if err != nil || wrapper.IsCompound {
			return nil, nil, applied, fmt.Errorf("%w: OCTET STRING wrapper: %v", ErrInvalid, derError(err))
		}
		inner := wrapper.Bytes
		if len(inner) == 0 || inner[0] != tagSequence {
			return nil, nil, applied, fmt.Errorf("%w: OCTET STRING wrapper does not hold a certificate SEQUENCE", ErrInvalid)
		}
		var seq asn1.RawValue
		after, err := asn1.Unmarshal(inner, &seq)
		if err != nil {
			return nil, nil, applied, fmt.Errorf("%w: certificate inside the OCTET STRING: %v", ErrInvalid, derError(err))
		}
		if len(after) != 0 {
			return nil, nil, applied, fmt.Errorf("%w: %d bytes after the certificate inside the OCTET STRING wrapper", ErrInvalid, len(after))
		}
		return inner, rest, applied, nil
	}
	if data[0] != tagSequence {
		return nil, nil, applied, fmt.Errorf("%w: EK certificate does not start with a DER SEQUENCE (first byte %#02x)", ErrInvalid, data[0])
	}
	var seq asn1.RawValue
	rest, err = asn1.Unmarshal(data, &seq)
	if err != nil {
		return nil, nil, applied, fmt.Errorf("%w: certificate SEQUENCE: %v", ErrInvalid, derError(err))
	}
	return data[:len(data)-len(rest)], rest, applied, nil
}

// derError names what encoding/asn1 refused; a nil err is a primitive where a constructed element was due.
func derError(err error) error {
	if err == nil {
		return errors.New("not a primitive OCTET STRING")
	}
	return err
}

// checkPadding accepts nothing, or a run of one byte value that NV stores use as filler (0xFF erased
// flash, 0x00 zeroed buffer).
func checkPadding(rest []byte) error {
	if len(rest) == 0 {
		return nil
	}
	fill := rest[0]
	if fill != 0x00 && fill != 0xFF {
		return fmt.Errorf("%w: %d bytes of non-padding data after the certificate (first %#02x)", ErrInvalid, len(rest), fill)
	}
	for i, b := range rest {
		if b != fill {
			return fmt.Errorf("%w: %d bytes after the certificate are not all %#02x padding (byte %d is %#02x)", ErrInvalid, len(rest), fill, i, b)
		}
	}
	return nil
}
