package bench

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/provisioning"
)

// recordedSteps runs what a board records after the CA has issued, on one connection: persist IAK and
// IDevID, write both certificates, read everything back; in the session salted to the EK when salted
// (its StartAuthSession and flush included). It clears the board afterwards, outside the timing.
func recordedSteps(b *testing.B, tpm transport.TPM, salted bool) time.Duration {
	l := provisioning.DefaultLayout()
	ek, err := provisioning.CreateEK(tpm, provisioning.EKRSA2048)
	if err != nil {
		b.Fatal(err)
	}
	iak, err := provisioning.CreateIAK(tpm, provisioning.KeyP256)
	if err != nil {
		b.Fatal(err)
	}
	idev, err := provisioning.CreateIDevID(tpm, provisioning.KeyP256)
	if err != nil {
		b.Fatal(err)
	}
	cert := make([]byte, 600)
	rand.Read(cert)
	start := time.Now()
	on := provisioning.Cached(tpm)
	end := func() error { return nil }
	if salted {
		if on, end, err = provisioning.Vouch(on, ek); err != nil {
			b.Fatal(err)
		}
	}
	// As the station does: the EK leaves its slot before Persist, the keys theirs after it (3 slots).
	for _, step := range []func() error{
		func() error { return ek.Flush(tpm) },
		func() error { return provisioning.Persist(on, iak, l.IAKHandle) },
		func() error { return provisioning.Persist(on, idev, l.IDevIDHandle) },
		func() error { return errors.Join(iak.Flush(tpm), idev.Flush(tpm)) },
		func() error { return provisioning.WriteCertNV(on, l.IAKCertIndex, cert, false) },
		func() error { return provisioning.WriteCertNV(on, l.IDevIDCertIndex, cert, false) },
		func() error { _, err := provisioning.Inspect(on, l); return err },
		end,
	} {
		if err := step(); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	if err := provisioning.Clear(tpm, l); err != nil {
		b.Fatal(err)
	}
	return took
}

// BenchmarkSaltedSessions measures, in one run, the recorded steps of a board with and without the session
// salted to the EK, on swtpm and on the SLB9670 latency profile, and reports the ratio. The profile has
// no figure for TPM2_StartAuthSession; a salted one costs the EK's private operation, so it is charged
// the profile's ActivateCredential time (RSA-2048 decrypt / ECDH).
func BenchmarkSaltedSessions(b *testing.B) {
	board, _ := fixturestest.NewSwtpmBoard(b)
	sw := fixturestest.Open(b, board.Addr())
	prof, err := fixtures.LatencyProfileByName("slb9670")
	if err != nil {
		b.Fatal(err)
	}
	cmds := map[tpm2.TPMCC]time.Duration{tpm2.TPMCCStartAuthSession: prof.ActivateCredential}
	for cc, d := range prof.Commands {
		cmds[cc] = d
	}
	prof.Commands = cmds
	chip := fixtures.WithLatency(sw, prof, nil, time.Sleep)
	for _, target := range []struct {
		name string
		tpm  transport.TPM
	}{{"swtpm", sw}, {"slb9670", chip}} {
		b.Run(target.name, func(b *testing.B) {
			var plain, salted time.Duration
			// Alternate which goes first, so neither pays for the other's leftovers (swtpm's NV file).
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					plain += recordedSteps(b, target.tpm, false)
					salted += recordedSteps(b, target.tpm, true)
				} else {
					salted += recordedSteps(b, target.tpm, true)
					plain += recordedSteps(b, target.tpm, false)
				}
			}
			n := time.Duration(b.N)
			b.ReportMetric(float64((plain/n).Microseconds())/1000, "ms-plain/board")
			b.ReportMetric(float64((salted/n).Microseconds())/1000, "ms-salted/board")
			b.ReportMetric(float64(salted)/float64(plain), "salted/plain")
		})
	}
}
