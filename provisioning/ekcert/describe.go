package ekcert

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Report is what the CA operator's `upstream-ca ek-cert verify FILE...` prints about one EK certificate.
type Report struct {
	Manufacturer   string          // vendor name, "" when unknown
	ManufacturerID string          // 8 hex digits from the SAN
	Model          string          // tcg-at-tpmModel
	Version        string          // tcg-at-tpmVersion (firmware)
	Key            string          // e.g. "RSA-2048", "ECC P-256"
	KeySHA256      string          // hex SHA-256 of the SubjectPublicKeyInfo, as in EK list exports
	Serial         string          // certificate serial, hex
	Issuer         string          // issuer DN
	NotBefore      time.Time       // validity period
	NotAfter       time.Time       //
	Applied        []Normalisation // encodings removed from the raw bytes
	Chain          []string        // subjects of the chain found, leaf first ("" subject shown as "(EK)")
	Verified       bool            // a chain to a configured root was found and every check passed
	Err            error           // why parsing or verification failed; nil when Verified or not verified
}

// Describe parses raw and, when v is not nil, verifies it (no presented intermediates). It never fails:
// a parse or verification error lands in Report.Err.
func Describe(raw []byte, v *Verifier) Report {
	var r Report
	c, err := Parse(raw)
	if err != nil {
		if _, applied, nerr := Normalise(raw); nerr == nil {
			r.Applied = applied
		}
		r.Err = err
		return r
	}
	x := c.X509
	r.Manufacturer, r.ManufacturerID, r.Model, r.Version = c.Manufacturer, c.ManufacturerID, c.Model, c.Version
	r.Key = keyName(x)
	sum := sha256.Sum256(x.RawSubjectPublicKeyInfo)
	r.KeySHA256 = hex.EncodeToString(sum[:])
	r.Serial = strings.ToUpper(x.SerialNumber.Text(16))
	r.Issuer = x.Issuer.String()
	r.NotBefore, r.NotAfter = x.NotBefore, x.NotAfter
	r.Applied = c.Applied
	if v == nil {
		return r
	}
	chain, err := v.Verify(c, nil)
	if err != nil {
		r.Err = err
		return r
	}
	r.Verified = true
	for _, cc := range chain {
		s := cc.Subject.String()
		if s == "" {
			s = "(EK)"
		}
		r.Chain = append(r.Chain, s)
	}
	return r
}

func keyName(x *x509.Certificate) string {
	switch k := x.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECC " + k.Curve.Params().Name
	}
	return x.PublicKeyAlgorithm.String()
}

// String renders the report one "field: value" per line, ending with the verdict.
func (r Report) String() string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-11s %s\n", k+":", printable(v)) }
	if r.ManufacturerID != "" || r.Model != "" {
		vendor := r.Manufacturer
		if vendor == "" {
			vendor = "unknown vendor"
		}
		if r.ManufacturerID != "" {
			vendor += " (id:" + r.ManufacturerID + ")"
		}
		line("vendor", vendor)
		line("model", r.Model)
		line("firmware", r.Version)
	}
	if r.Key != "" {
		line("key", r.Key)
		line("key sha256", r.KeySHA256)
		line("serial", r.Serial)
		line("issuer", r.Issuer)
		line("validity", r.NotBefore.UTC().Format(time.RFC3339)+" to "+r.NotAfter.UTC().Format(time.RFC3339))
	}
	norm := "none"
	if len(r.Applied) > 0 {
		parts := make([]string, len(r.Applied))
		for i, a := range r.Applied {
			parts[i] = string(a)
		}
		norm = strings.Join(parts, ", ")
	}
	line("normalised", norm)
	if len(r.Chain) > 0 {
		line("chain", strings.Join(r.Chain, " -> "))
	}
	switch {
	case r.Err != nil:
		line("verdict", "REJECTED: "+r.Err.Error())
	case r.Verified:
		line("verdict", "OK")
	default:
		line("verdict", "parsed, not verified (no vendor roots given)")
	}
	return b.String()
}

// printable keeps hostile certificate text from driving the operator's terminal.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}
