// Package pemfile reads the PEM certificate files operators hand to the binaries (trust bundles, an OEM's
// root, a signed issuing CA): bounded, every CERTIFICATE block parsed, other block types passed over, and a
// file with no certificate at all an error that names it.
package pemfile

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// MaxSize bounds a certificate file: a trust bundle of a few dozen certificates fits many times over.
const MaxSize = 1 << 20

// Certificates reads every CERTIFICATE block of the PEM file at path, in file order.
func Certificates(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxSize)
	}
	var certs []*x509.Certificate
	for rest := raw; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return certs, nil
}
