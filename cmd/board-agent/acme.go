package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/pemfile"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/acmeattest"
)

const acmeUsage = `board-agent acme --directory URL --tpm ADDR --root PEM --iak-chain PEM --out DIR [flags]

Obtains a certificate for this board's serial (the permanentIdentifier of its IAK certificate) from an ACME
server through device-attest-01: a new key is made in the TPM, certified by the IAK, and persisted at
--key-handle; DIR/cert.pem gets the certificate and its chain. docs/device.md has the details.
`

// runACME wires flags to acmeattest.Obtain.
func runACME(args []string) int {
	fs := flag.NewFlagSet("acme", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), acmeUsage); fs.PrintDefaults() }
	directory := fs.String("directory", "", "ACME directory URL, e.g. https://ca.example:9000/acme/devices/directory")
	tpmAddr := fs.String("tpm", "/dev/tpmrm0", "TPM address: /dev/tpmrm0, swtpm://host:port, unix:///path")
	root := fs.String("root", "", "PEM file of the roots the ACME server's TLS certificate chains to (default: the system roots)")
	iakChain := fs.String("iak-chain", "", "PEM file of the CA certificates between the IAK certificate and the ACME server's attestation roots (the issuing CA)")
	out := fs.String("out", "", "folder for cert.pem (created if missing)")
	ident := fs.String("identifier", "", "permanent-identifier to ask for (default: the IAK certificate's permanentIdentifier)")
	keyAlg := fs.String("key-alg", string(provisioning.KeyP256), "the new key: p256 or rsa2048")
	keyHandle := fs.String("key-handle", fmt.Sprintf("%#x", uint32(acmeattest.DefaultKeyHandle)), "persistent handle for the new key")
	replace := fs.Bool("replace", false, "evict a key already at --key-handle")
	iakHandle := fs.String("iak-handle", fmt.Sprintf("%#x", uint32(provisioning.DefaultLayout().IAKHandle)), "persistent handle of the IAK")
	iakNV := fs.String("iak-cert-nv", fmt.Sprintf("%#x", provisioning.DefaultLayout().IAKCertIndex), "NV index of the IAK certificate")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *directory == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "board-agent acme:", err); return 1 }
	layout := provisioning.DefaultLayout()
	h, err := parseHex(*iakHandle)
	if err != nil {
		return fail(fmt.Errorf("--iak-handle: %w", err))
	}
	layout.IAKHandle = tpm2.TPMHandle(h)
	if layout.IAKCertIndex, err = parseHex(*iakNV); err != nil {
		return fail(fmt.Errorf("--iak-cert-nv: %w", err))
	}
	kh, err := parseHex(*keyHandle)
	if err != nil {
		return fail(fmt.Errorf("--key-handle: %w", err))
	}
	alg, err := provisioning.ParseKeyAlg(*keyAlg)
	if err != nil {
		return fail(err)
	}
	var chain [][]byte
	if *iakChain != "" {
		if chain, err = readPEMCerts(*iakChain); err != nil {
			return fail(fmt.Errorf("--iak-chain: %w", err))
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if *root != "" {
		roots, err := readPEMCerts(*root)
		if err != nil {
			return fail(fmt.Errorf("--root: %w", err))
		}
		pool := x509.NewCertPool()
		for _, der := range roots {
			c, _ := x509.ParseCertificate(der)
			pool.AddCert(c)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	tpm, err := fixtures.Open(*tpmAddr)
	if err != nil {
		return fail(err)
	}
	defer tpm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := acmeattest.Obtain(ctx, acmeattest.Config{
		Directory: *directory, HTTP: hc, TPM: tpm, Layout: layout, IAKChain: chain, Identifier: *ident,
		KeyAlg: alg, KeyHandle: tpm2.TPMHandle(kh), Replace: *replace,
	})
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(err)
	}
	var pemOut []byte
	for _, der := range res.Chain {
		pemOut = append(pemOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	path := filepath.Join(*out, "cert.pem")
	if err := os.WriteFile(path, pemOut, 0o644); err != nil {
		return fail(err)
	}
	fmt.Printf("board-agent: certificate for %s in %s, key at %#x\n", res.Identifier, path, uint32(res.KeyHandle))
	return 0
}

func parseHex(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	return uint32(v), err
}

func readPEMCerts(path string) ([][]byte, error) {
	certs, err := pemfile.Certificates(path)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out, nil
}
