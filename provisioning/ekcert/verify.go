package ekcert

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// maxPresented bounds the intermediates a caller may present with an EK (wire.go allows 8).
const maxPresented = 16

// Verifier decides whether an EK certificate was issued by a TPM vendor the CA trusts. The zero value
// trusts nothing.
type Verifier struct {
	Roots         []*x509.Certificate // TPM vendor roots (trust anchors)
	Intermediates []*x509.Certificate // vendor intermediates the CA holds
	Now           func() time.Time    // defaults to time.Now
}

// Verify checks that c is the EK certificate of a genuine TPM 2.0 and returns the chain it found, leaf
// first (the leaf is c.X509). presented are intermediates sent along with the EK (e.g. read from the
// TPM's chain NV range); they are untrusted and only help build the chain. The checks, in order:
//
//  1. c was parsed by Parse: TPM 1.2 EKs and unparseable input never get here (ErrInvalid when c is nil,
//     at most 16 presented certificates).
//  2. Critical extensions: the only critical extension Go's x509 leaves unhandled that is tolerated is a
//     subject alternative name holding exactly one directoryName (the TPM identity, TCG EK Credential
//     Profile 3.2.9); any other unhandled critical extension is ErrUntrusted.
//  3. Not a CA: BasicConstraints cA=TRUE or keyUsage keyCertSign is ErrNotEK (a CA certificate posing as
//     an EK).
//  4. The extended key usage holds tcg-kp-EKCertificate 2.23.133.8.1, else ErrNotEK.
//  5. Now is within the EK certificate's validity period, else ErrUntrusted.
//  6. A chain to one of Roots through Intermediates and presented, with every signature, validity period
//     and CA constraint checked by x509.Verify (key usages: any), else ErrUntrusted.
func (v *Verifier) Verify(c *Certificate, presented []*x509.Certificate) (chain []*x509.Certificate, err error) {
	if c == nil || c.X509 == nil {
		return nil, fmt.Errorf("%w: no EK certificate given", ErrInvalid)
	}
	if len(presented) > maxPresented {
		return nil, fmt.Errorf("%w: %d chain certificates presented, at most %d accepted", ErrInvalid, len(presented), maxPresented)
	}
	leaf := c.X509

	// 2. Drop the critical SAN Go could not handle, if and only if it is the TPM identity.
	unhandled := slices.Clone(leaf.UnhandledCriticalExtensions)
	if i := slices.IndexFunc(unhandled, func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSubjectAltName) }); i >= 0 && c.sanOnlyDirName {
		unhandled = slices.Delete(unhandled, i, i+1)
	}
	if len(unhandled) > 0 {
		return nil, fmt.Errorf("%w: unhandled critical extension %v", ErrUntrusted, unhandled[0])
	}

	// 3.
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: certificate is a CA (basicConstraints cA=TRUE), not an EK", ErrNotEK)
	}
	if leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		return nil, fmt.Errorf("%w: certificate may sign certificates (keyUsage keyCertSign), not an EK", ErrNotEK)
	}

	// 4.
	if !slices.ContainsFunc(leaf.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(oidEKCertificateEKU) }) {
		return nil, fmt.Errorf("%w: no tcg-kp-EKCertificate extended key usage (2.23.133.8.1)", ErrNotEK)
	}

	// 5.
	now := clock.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	if t.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: EK certificate is not valid before %s (now %s)", ErrUntrusted, leaf.NotBefore.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if t.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: EK certificate expired %s (now %s)", ErrUntrusted, leaf.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}

	// 6.
	if len(v.Roots) == 0 {
		return nil, fmt.Errorf("%w: no TPM vendor roots configured", ErrUntrusted)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range v.Roots {
		roots.AddCert(r)
	}
	for _, ic := range v.Intermediates {
		inter.AddCert(ic)
	}
	for _, ic := range presented {
		if ic != nil {
			inter.AddCert(ic)
		}
	}
	cp := *leaf
	cp.UnhandledCriticalExtensions = unhandled
	chains, err := cp.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   t,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: no chain to a configured TPM vendor root: %v", ErrUntrusted, err)
	}
	best := chains[0]
	for _, ch := range chains[1:] {
		if len(ch) < len(best) {
			best = ch
		}
	}
	chain = slices.Clone(best)
	chain[0] = leaf
	return chain, nil
}
