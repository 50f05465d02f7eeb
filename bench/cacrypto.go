package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
)

// CryptoOnly is figure 4's floor: the CPU the cryptography of one enrollment costs the CA when it does
// nothing else, measured in the load generator's process in the same run as the CA figure.
type CryptoOnly struct {
	Iterations    int
	PerEnrollment time.Duration // CPU of one enrollment's cryptography
	// The parts, CPU per enrollment: the EK certificate chain (EK certificate by the vendor intermediate,
	// intermediate by the vendor root: two ECDSA P-256 verifications), TPM2_MakeCredential to the EK
	// (ephemeral P-256 key, ECDH, KDFe/KDFa, AES-CFB, HMAC), the certify signature (one ECDSA P-256
	// verification) and the two certificate signatures (ECDSA P-256 with SHA-256).
	Chain, MakeCredential, Certify, Sign time.Duration
}

// cryptoBoard is what one enrollment's cryptography works on, made before the clock starts.
type cryptoBoard struct {
	ek, inter, root *x509.Certificate
	ekPub           *tpm2.TPMTPublic
	iakName         []byte
	iak             *ecdsa.PublicKey
	attestDigest    []byte
	r, s            *big.Int
}

// measureCryptoOnly runs n enrollments' worth of the CA's cryptography on one OS thread and reads that
// thread's CPU time (getrusage RUSAGE_THREAD), so other processes on the same cores do not count, only
// what they do to this thread's caches. The inputs are real: soft boards of vendor, their EK
// certificates and vendor chain, a MakeCredential over the IAK's Name, a certify signature by the IAK.
func measureCryptoOnly(vendor *fixtures.Manufacturer, n int) (*CryptoOnly, error) {
	return measureCryptoOnlyWith(vendor, vendor, n)
}

// measureCryptoOnlyWith checks the EK chains against trusted's root and intermediate (vendor's, but for
// the test that a chain that does not verify fails the measurement).
func measureCryptoOnlyWith(vendor, trusted *fixtures.Manufacturer, n int) (*CryptoOnly, error) {
	const distinct = 8
	boards := make([]cryptoBoard, distinct)
	for i := range boards {
		sb, err := NewSoftBoard(vendor, fmt.Sprintf("CRYPTO%04d", i), nil)
		if err != nil {
			return nil, err
		}
		ek, err := x509.ParseCertificate(sb.EKCert)
		if err != nil {
			return nil, err
		}
		ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](sb.EKPublic)
		if err != nil {
			return nil, err
		}
		attest, _, err := sb.Certify(make([]byte, 32), nil)
		if err != nil {
			return nil, err
		}
		d := sha256.Sum256(attest)
		r, s, err := ecdsa.Sign(rand.Reader, sb.iak, d[:])
		if err != nil {
			return nil, err
		}
		boards[i] = cryptoBoard{ek: ek, inter: trusted.Intermediate(), root: trusted.Root(), ekPub: ekPub,
			iakName: sb.iakName, iak: &sb.iak.PublicKey, attestDigest: d[:], r: r, s: s}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// A to-be-signed certificate the size of the CA's (about 600 bytes), hashed as x509 does before signing.
	tbs := make([]byte, 600)
	secret := make([]byte, 32)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var parts [4]time.Duration
	for i := range n {
		b := &boards[i%distinct]
		steps := [4]func() error{
			func() error {
				if err := b.ek.CheckSignatureFrom(b.inter); err != nil {
					return err
				}
				return b.inter.CheckSignatureFrom(b.root)
			},
			func() error {
				key, err := tpm2.ImportEncapsulationKey(b.ekPub)
				if err != nil {
					return err
				}
				_, _, err = tpm2.CreateCredential(rand.Reader, key, b.iakName, secret)
				return err
			},
			func() error {
				if !ecdsa.Verify(b.iak, b.attestDigest, b.r, b.s) {
					return errors.New("certify signature does not verify")
				}
				return nil
			},
			func() error {
				for range 2 {
					tbs[0] = byte(i)
					d := sha256.Sum256(tbs)
					if _, err := ecdsa.SignASN1(rand.Reader, caKey, d[:]); err != nil {
						return err
					}
				}
				return nil
			},
		}
		for k, step := range steps {
			t0, err := threadCPU()
			if err != nil {
				return nil, err
			}
			if err := step(); err != nil {
				return nil, fmt.Errorf("crypto-only step %d: %w", k, err)
			}
			t1, err := threadCPU()
			if err != nil {
				return nil, err
			}
			parts[k] += t1 - t0
		}
	}
	res := &CryptoOnly{Iterations: n, Chain: parts[0] / time.Duration(n), MakeCredential: parts[1] / time.Duration(n),
		Certify: parts[2] / time.Duration(n), Sign: parts[3] / time.Duration(n)}
	res.PerEnrollment = res.Chain + res.MakeCredential + res.Certify + res.Sign
	return res, nil
}

// threadCPU is the calling OS thread's CPU time, user and system.
func threadCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
