package provisioning

import (
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The EK credential range of NV (TCG EK Credential Profile 2.2.1.4-6): certificates, templates, nonces and
// the chain. Only a TPM's manufacturer or platform defines indices here; nothing this package writes does.
const (
	nvEKRangeFirst = 0x01C00000
	nvEKRangeLast  = NVEKChainLast
)

// cachedTPM is one board's connection with what it has learned once: the fixed properties (TPM_PT_FIXED,
// which cannot change while the board is connected) and which indices of the EK credential range exist.
// The probes of absent EK certificate, template and nonce indices, and the property reads before every NV
// access, each cost a command, which on a discrete chip is a few milliseconds.
type cachedTPM struct {
	transport.TPM
	props    *Properties
	ekListed bool
	ekRange  map[uint32]bool // nil when not listed (or the listing failed)
	session  tpm2.Session    // the salted session of Vouch, nil before it (session.go)
}

// Cached wraps one board's TPM connection so that the functions of this package read its fixed properties
// and list its EK credential range once. Use it for one board's session; Close closes the wrapped TPM
// when it has a Close.
func Cached(tpm transport.TPM) transport.TPM {
	if _, ok := tpm.(*cachedTPM); ok {
		return tpm
	}
	return &cachedTPM{TPM: tpm}
}

func (c *cachedTPM) Close() error {
	if cl, ok := c.TPM.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

// cachedProperties returns the properties read earlier on a cached connection.
func cachedProperties(tpm transport.TPM) (*Properties, bool) {
	if c, ok := tpm.(*cachedTPM); ok && c.props != nil {
		p := *c.props
		return &p, true
	}
	return nil, false
}

func rememberProperties(tpm transport.TPM, p *Properties) {
	if c, ok := tpm.(*cachedTPM); ok {
		q := *p
		c.props = &q
	}
}

// knownAbsent reports that index lies in the EK credential range and the TPM's listing of that range does
// not name it. The range is listed (TPM_CAP_HANDLES) on the first question; when the listing fails, the
// indices are asked one by one, as without the cache, and the error surfaces there.
func knownAbsent(tpm transport.TPM, index uint32) bool {
	c, ok := tpm.(*cachedTPM)
	if !ok || index < nvEKRangeFirst || index > nvEKRangeLast {
		return false
	}
	if !c.ekListed {
		c.ekListed = true
		if hs, err := ListHandles(c.TPM, nvEKRangeFirst, nvEKRangeLast); err == nil {
			c.ekRange = make(map[uint32]bool, len(hs))
			for _, h := range hs {
				c.ekRange[uint32(h)] = true
			}
		}
	}
	return c.ekRange != nil && !c.ekRange[index]
}

// listNV lists the defined NV indices in [first, last], from the cached listing of the EK credential range
// when the range lies inside it.
func listNV(tpm transport.TPM, first, last uint32) ([]tpm2.TPMHandle, error) {
	if c, ok := tpm.(*cachedTPM); ok && first >= nvEKRangeFirst && last <= nvEKRangeLast {
		knownAbsent(tpm, first)
		if c.ekRange != nil {
			var out []tpm2.TPMHandle
			for h := range c.ekRange {
				if h >= first && h <= last {
					out = append(out, tpm2.TPMHandle(h))
				}
			}
			slices.Sort(out)
			return out, nil
		}
	}
	return ListHandles(tpm, first, last)
}
