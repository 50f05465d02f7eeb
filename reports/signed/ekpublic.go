package signed

import (
	"crypto"
	"errors"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// Bounds of an EK list's binary fields.
const (
	maxEKPublic  = tpmwire.MaxPublicBytes // as provisioning.MaxPublicBytes
	maxEKCertDER = 4096                   // as provisioning.MaxCertBytes
)

// EKPublicSHA256 is the EK identity EK lists, reports, the inventory and the CA key boards by:
// tpmwire.KeyIdentity, SHA-256 over the DER SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER |
// sha256sum` prints).
func EKPublicSHA256(pub crypto.PublicKey) ([32]byte, error) { return tpmwire.KeyIdentity(pub) }

// parseTPMTPublic reads the key out of a marshalled TPMT_PUBLIC with the one conversion, tpmwire.PublicKey.
func parseTPMTPublic(b []byte) (crypto.PublicKey, error) { return tpmwire.PublicKey(b) }

// certPublicKey reads the key of an EK list's certificate with ekcert.PublicKey (EK certificates carry
// negative serials and critical extensions Go's x509 refuses). An EK list carries bare DER: the NV forms
// ekcert tolerates are the exporter's to remove.
func certPublicKey(der []byte) (crypto.PublicKey, error) {
	key, applied, err := ekcert.PublicKey(der)
	if len(applied) != 0 {
		return nil, errors.New("not one DER certificate (normalise NV padding and headers first)")
	}
	return key, err
}
