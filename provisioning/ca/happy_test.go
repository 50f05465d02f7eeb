package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/tpmline/tpmline/provisioning"
)

// TestEnrollHappyPath runs both rounds with real TPM output for each EK/key algorithm pairing, then checks
// the certificates chain to the root and the enrollment was recorded.
func TestEnrollHappyPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		ek   provisioning.EKAlg
		keys provisioning.KeyAlg
	}{
		{"rsa-ek/p256", provisioning.EKRSA2048, provisioning.KeyP256},
		{"rsa-ek/rsa2048", provisioning.EKRSA2048, provisioning.KeyRSA2048},
		{"p256-ek/p256", provisioning.EKP256, provisioning.KeyP256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := newBoard(t, "SN-HAPPY-1", tc.ek, tc.keys)
			e := newEnv(t, "")
			ch, err := e.v.Enroll(ctx, "station-1", b.request())
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Nonce) != 32 || len(ch.SessionID) != 32 || !ch.ExpiresAt.Equal(e.now.Add(DefaultChallengeTTL)) {
				t.Fatalf("challenge %+v", ch)
			}
			certs, err := e.v.Activate(ctx, "station-1", b.answer(t, ch))
			if err != nil {
				t.Fatal(err)
			}
			iakCert, idevidCert := checkIssued(t, e, certs, "SN-HAPPY-1")
			for _, kc := range []struct {
				cert *x509.Certificate
				key  *provisioning.Key
			}{{iakCert, b.iak}, {idevidCert, b.idevid}} {
				want, err := publicKey(kc.key.PublicBytes)
				if err != nil {
					t.Fatal(err)
				}
				if !want.(interface{ Equal(crypto.PublicKey) bool }).Equal(kc.cert.PublicKey) {
					t.Fatal("certificate does not certify the TPM key")
				}
			}
			enr, err := e.store.EnrollmentByEK(ctx, mustEKHash(t, b))
			if err != nil || enr.Serial != "SN-HAPPY-1" || enr.Station != "station-1" {
				t.Fatalf("enrollment %+v, %v", enr, err)
			}
			issued, err := e.store.CertificatesByBoard(ctx, "SN-HAPPY-1")
			if err != nil || len(issued) != 2 {
				t.Fatalf("issued certificates: %d, %v", len(issued), err)
			}
		})
	}
}

func mustEKHash(t testing.TB, b *board) []byte {
	t.Helper()
	pub, err := publicKey(b.ek.PublicBytes)
	if err != nil {
		t.Fatal(err)
	}
	h, err := EKPublicSHA256(pub)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkIssued verifies both certificates to the root and checks which key each certifies.
func checkIssued(t testing.TB, e *env, certs *provisioning.Certificates, serial string) (iak, idevid *x509.Certificate) {
	t.Helper()
	if len(certs.Chain) != 2 {
		t.Fatalf("chain has %d certificates", len(certs.Chain))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	rootCert, err := x509.ParseCertificate(certs.Chain[1])
	if err != nil {
		t.Fatal(err)
	}
	if !rootCert.Equal(e.root.Cert) {
		t.Fatal("chain does not end in the CA root")
	}
	roots.AddCert(rootCert)
	ic, err := x509.ParseCertificate(certs.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	inter.AddCert(ic)
	for i, der := range [][]byte{certs.IAKCert, certs.IDevIDCert} {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		// The IAK's critical SAN (its subject is empty) holds no name Go knows; a relying party that reads the
		// TCG names (step-ca, WebAuthn verifiers) clears exactly that OID before verifying.
		cc := *c
		if i == 0 {
			if len(c.UnhandledCriticalExtensions) != 1 || !c.UnhandledCriticalExtensions[0].Equal(oidSubjectAltName) {
				t.Fatalf("IAK unhandled critical extensions %v", c.UnhandledCriticalExtensions)
			}
			cc.UnhandledCriticalExtensions = nil
		}
		if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: e.now}); err != nil {
			t.Fatalf("certificate %d does not verify: %v", i, err)
		}
		if i == 0 {
			if id, _, err := ParsePermanentIdentifier(c); err != nil || id != serial {
				t.Fatalf("IAK permanentIdentifier %q, %v", id, err)
			}
			if c.Subject.String() != "" {
				t.Fatalf("IAK subject %q", c.Subject)
			}
		} else if c.Subject.SerialNumber != serial {
			t.Fatalf("subject serialNumber %q", c.Subject.SerialNumber)
		}
		if i == 0 {
			iak = c
		} else {
			idevid = c
		}
	}
	return iak, idevid
}
