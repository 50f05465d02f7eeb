package ekcert

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// maxPresented bounds the intermediates a caller may present with an EK (wire.go allows 8).
const maxPresented = 16

// Verifier decides whether an EK certificate was issued by a TPM vendor the CA trusts. The zero value
// trusts nothing. A Verifier must not be copied after its first Verify (it holds its cache).
type Verifier struct {
	Roots         []*x509.Certificate // TPM vendor roots (trust anchors)
	Intermediates []*x509.Certificate // vendor intermediates the CA holds
	Now           func() time.Time    // defaults to time.Now

	cache chainCache
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
//
// Check 6 remembers the vendor intermediates it verified (chainCache): an EK issued by one of them
// (the same bytes, configured or presented) is then verified by x509.Verify with that intermediate as
// its anchor, so the intermediate's own signature and the path above it are not checked again. The
// shortcut is only taken where it decides exactly as the whole path would, and anything it does not
// accept goes the whole path.
func (v *Verifier) Verify(c *Certificate, presented []*x509.Certificate) (chain []*x509.Certificate, err error) {
	now := clock.Now
	if v.Now != nil {
		now = v.Now
	}
	return v.VerifyAt(c, presented, now())
}

// VerifyAt is Verify at time t instead of Now.
func (v *Verifier) VerifyAt(c *Certificate, presented []*x509.Certificate, t time.Time) (chain []*x509.Certificate, err error) {
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
	cp := *leaf
	cp.UnhandledCriticalExtensions = unhandled
	if chain := v.cachedChain(&cp, presented, t); chain != nil {
		chain[0] = leaf
		return chain, nil
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
	v.cache.remember(chain)
	return chain, nil
}

// maxCachedIntermediates bounds the cache; past it nothing new is remembered. Only intermediates that
// chained to a configured root get in, so only real vendor CAs can fill it: a few dozen exist.
const maxCachedIntermediates = 256

// chainCache remembers the intermediates Verify chained an EK through, keyed by the SHA-256 of their
// exact DER.
type chainCache struct {
	mu sync.Mutex
	m  map[[32]byte]*verifiedPath
	// hits counts EKs verified through the cache (for tests).
	hits int
}

// verifiedPath is what the whole path found above an EK: its issuer, the CAs from it to the root, and
// the time window in which every one of those is valid.
type verifiedPath struct {
	issuer   *x509.Certificate
	above    []*x509.Certificate // issuer ... root
	from, to time.Time
}

// remember records the path above chain[0] (leaf, issuer, ..., root) if a later EK under the same issuer
// can be verified against the issuer alone with the same outcome as against the whole path. That holds
// when no CA on the path carries name constraints (x509 checks those against the leaf's names down the
// whole chain) or policy constraints or mappings (x509's policy graph runs over the whole chain; without
// them it cannot refuse). A leaf signed by a root directly has nothing to remember.
func (cc *chainCache) remember(chain []*x509.Certificate) {
	if len(chain) < 3 {
		return
	}
	above := slices.Clone(chain[1:])
	p := &verifiedPath{issuer: above[0], above: above, from: above[0].NotBefore, to: above[0].NotAfter}
	for _, ca := range above {
		if hasNameConstraints(ca) || hasPolicyConstraints(ca) {
			return
		}
		if ca.NotBefore.After(p.from) {
			p.from = ca.NotBefore
		}
		if ca.NotAfter.Before(p.to) {
			p.to = ca.NotAfter
		}
	}
	key := sha256.Sum256(p.issuer.Raw)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.m == nil {
		cc.m = map[[32]byte]*verifiedPath{}
	}
	if _, ok := cc.m[key]; ok || len(cc.m) >= maxCachedIntermediates {
		return
	}
	cc.m[key] = p
}

func (cc *chainCache) lookup(issuer *x509.Certificate) *verifiedPath {
	key := sha256.Sum256(issuer.Raw)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.m[key]
	if p == nil || !bytes.Equal(p.issuer.Raw, issuer.Raw) {
		return nil
	}
	return p
}

// cachedChain verifies leaf (checks 1 to 5 passed, its tolerated SAN dropped) against an intermediate
// the whole path verified before, or returns nil for the whole path to decide. It takes the shortcut
// only when all of these hold:
//   - the intermediate is one of the configured or presented certificates, byte for byte the one
//     remembered, and the leaf names it as issuer;
//   - the root its path ended in is still one of Roots;
//   - t is inside the validity of every CA on that path;
//   - the leaf has no policy constraints or mappings (with them, x509's policy check depends on the CAs
//     above the issuer);
//   - x509.Verify accepts the leaf with that intermediate as its only anchor: the leaf's signature, its
//     validity, the intermediate's validity and CA constraints (basicConstraints, keyUsage for
//     signing certificates), as in the whole path.
func (v *Verifier) cachedChain(leaf *x509.Certificate, presented []*x509.Certificate, t time.Time) []*x509.Certificate {
	if hasPolicyConstraints(leaf) {
		return nil
	}
	for _, set := range [][]*x509.Certificate{v.Intermediates, presented} {
		for _, ic := range set {
			if ic == nil || !bytes.Equal(ic.RawSubject, leaf.RawIssuer) {
				continue
			}
			p := v.cache.lookup(ic)
			if p == nil || t.Before(p.from) || t.After(p.to) {
				continue
			}
			root := p.above[len(p.above)-1]
			if !slices.ContainsFunc(v.Roots, func(r *x509.Certificate) bool { return r != nil && bytes.Equal(r.Raw, root.Raw) }) {
				continue
			}
			anchor := x509.NewCertPool()
			anchor.AddCert(p.issuer)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: anchor, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				continue
			}
			v.cache.mu.Lock()
			v.cache.hits++
			v.cache.mu.Unlock()
			return append([]*x509.Certificate{leaf}, p.above...)
		}
	}
	return nil
}

func hasNameConstraints(c *x509.Certificate) bool {
	return len(c.PermittedDNSDomains) > 0 || len(c.ExcludedDNSDomains) > 0 ||
		len(c.PermittedIPRanges) > 0 || len(c.ExcludedIPRanges) > 0 ||
		len(c.PermittedEmailAddresses) > 0 || len(c.ExcludedEmailAddresses) > 0 ||
		len(c.PermittedURIDomains) > 0 || len(c.ExcludedURIDomains) > 0
}

func hasPolicyConstraints(c *x509.Certificate) bool {
	return len(c.PolicyMappings) > 0 ||
		c.RequireExplicitPolicy > 0 || c.RequireExplicitPolicyZero ||
		c.InhibitPolicyMapping > 0 || c.InhibitPolicyMappingZero ||
		c.InhibitAnyPolicy > 0 || c.InhibitAnyPolicyZero
}
