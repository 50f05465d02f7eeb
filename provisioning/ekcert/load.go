package ekcert

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxCAFileSize bounds one CA file LoadCertificates reads; vendor bundles of every TPM root in PEM are
// around 100 KiB.
const maxCAFileSize = 4 << 20

// LoadCertificates reads CA certificates from a file (PEM with any number of CERTIFICATE blocks, or one
// DER certificate) or from every regular file in a directory (not recursive; names starting with "."
// skipped). A certificate or file that does not parse is skipped and reported in warnings, one line each,
// so that one bad vendor file (e.g. a non-minimal serial Go refuses) does not take down the rest. err is
// set when the path cannot be read or when nothing at all loaded.
func LoadCertificates(pathOrDir string) (certs []*x509.Certificate, warnings []string, err error) {
	info, err := os.Stat(pathOrDir)
	if err != nil {
		return nil, nil, fmt.Errorf("loading TPM vendor CA certificates: %w", err)
	}
	files := []string{pathOrDir}
	if info.IsDir() {
		entries, err := os.ReadDir(pathOrDir)
		if err != nil {
			return nil, nil, fmt.Errorf("loading TPM vendor CA certificates: %w", err)
		}
		files = files[:0]
		for _, e := range entries { // ReadDir sorts by name: deterministic order
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			files = append(files, filepath.Join(pathOrDir, e.Name()))
		}
	}
	for _, f := range files {
		got, warn := loadFile(f)
		certs = append(certs, got...)
		warnings = append(warnings, warn...)
	}
	if len(certs) == 0 {
		return nil, warnings, fmt.Errorf("no usable certificate in %s (%d warnings)", pathOrDir, len(warnings))
	}
	return certs, warnings, nil
}

func loadFile(name string) (certs []*x509.Certificate, warnings []string) {
	data, err := readBounded(name, maxCAFileSize)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: skipped: %v", name, err)}
	}
	if !bytes.Contains(data, []byte("-----BEGIN ")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, []string{fmt.Sprintf("%s: skipped: not a PEM file and not one DER certificate: %v", name, err)}
		}
		return []*x509.Certificate{c}, nil
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" && block.Type != "X509 CERTIFICATE" {
			continue
		}
		n++
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: certificate %d skipped: %v", name, n, err))
			continue
		}
		certs = append(certs, c)
	}
	if n == 0 {
		warnings = append(warnings, fmt.Sprintf("%s: skipped: no PEM CERTIFICATE block", name))
	}
	return certs, warnings
}

func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
