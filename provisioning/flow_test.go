package provisioning_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
)

// The product's per-board flow is station/flow.go; these tests drive provisioning's exported steps in the
// same order with runSteps, so the device side is tested step by step against the real CA without the
// station's journal and inventory.

// startCA runs the real upstream CA trusting the simulated vendor that manufactures openTPM's boards.
func startCA(t *testing.T) *fixturestest.CA {
	t.Helper()
	m, err := fixtures.DefaultManufacturer()
	if err != nil {
		t.Fatal(err)
	}
	return fixturestest.StartCA(t, fixturestest.CAOptions{
		VendorRoots:         []*x509.Certificate{m.Root()},
		VendorIntermediates: []*x509.Certificate{m.Intermediate()},
	})
}

// stepOptions drive runSteps.
type stepOptions struct {
	Serial, Product string
	Rework          bool
	KeyAlg          provisioning.KeyAlg
	Layout          provisioning.Layout // zero: DefaultLayout
	// Step, when set, is called at the start of each step.
	Step func(name string)
}

type stepTime struct {
	Name     string
	Duration time.Duration
}

// stepResult is what runSteps did to the board.
type stepResult struct {
	EKCert       provisioning.NVCert
	IAKPublic    []byte
	Certificates *provisioning.Certificates
	State        *provisioning.BoardState
	Steps        []stepTime
}

// runSteps provisions one board: flush, TPM info, EK certificates, EK, EK check, (clear,) IAK, IDevID,
// enroll, credential activation, certify, issue, persist, flush, certificate NV writes, read-back. Every key
// it loads is flushed on return, success or not.
func runSteps(ctx context.Context, tpm transport.TPM, ca provisioning.CA, opts stepOptions) (res *stepResult, err error) {
	alg, err := provisioning.ParseKeyAlg(string(opts.KeyAlg))
	if err != nil {
		return nil, err
	}
	layout := opts.Layout
	if layout == (provisioning.Layout{}) {
		layout = provisioning.DefaultLayout()
	}
	res = &stepResult{}
	step := func(name string, f func() error) error {
		if opts.Step != nil {
			opts.Step(name)
		}
		t0 := clock.Now()
		err := f()
		res.Steps = append(res.Steps, stepTime{name, clock.Now().Sub(t0)})
		if err != nil {
			return fmt.Errorf("board %s: step %s: %w", opts.Serial, name, err)
		}
		return nil
	}
	var ek, iak, idevid *provisioning.Key
	defer func() {
		for _, k := range []*provisioning.Key{idevid, iak, ek} {
			if ferr := k.Flush(tpm); ferr != nil && err == nil {
				err = ferr
			}
		}
	}()
	var props *provisioning.Properties
	var certs []provisioning.NVCert
	steps := []struct {
		name string
		f    func() error
	}{
		{provisioning.StepFlush, func() error { return provisioning.FlushTransients(tpm) }},
		{provisioning.StepTPMInfo, func() (err error) { props, err = provisioning.ReadProperties(tpm); return }},
		{provisioning.StepEKCerts, func() (err error) { certs, err = provisioning.ReadEKCertificates(tpm); return }},
		{provisioning.StepEK, func() error {
			nameAlg, _ := alg.NameAlg()
			c, ekAlg, err := provisioning.ChooseEKCert(certs, nameAlg, 0)
			if err != nil {
				return err
			}
			res.EKCert = c
			ek, err = provisioning.CreateEK(tpm, ekAlg)
			return err
		}},
		{provisioning.StepEKCheck, func() error { return provisioning.CheckEKMatchesCert(res.EKCert.Data, &ek.Public) }},
	}
	if opts.Rework {
		steps = append(steps, struct {
			name string
			f    func() error
		}{provisioning.StepClear, func() error { return provisioning.Clear(tpm, layout) }})
	}
	for _, s := range steps {
		if err := step(s.name, s.f); err != nil {
			return res, err
		}
	}
	if err := step(provisioning.StepIAK, func() (err error) { iak, err = provisioning.CreateIAK(tpm, alg); return }); err != nil {
		return res, err
	}
	res.IAKPublic = iak.PublicBytes
	if err := step(provisioning.StepIDevID, func() (err error) { idevid, err = provisioning.CreateIDevID(tpm, alg); return }); err != nil {
		return res, err
	}
	var ch *provisioning.Challenge
	if err := step(provisioning.StepEnroll, func() (err error) {
		req := &provisioning.EnrollRequest{
			Version: provisioning.ProtocolVersion, Serial: opts.Serial, Product: opts.Product, Rework: opts.Rework,
			EKCert: res.EKCert.Data, EKPublic: ek.PublicBytes, IAKPublic: iak.PublicBytes,
			IDevIDPublic: idevid.PublicBytes, TPM: props.Info,
		}
		for _, c := range certs {
			if c.IsChain() {
				req.EKChain = append(req.EKChain, c.Data)
			}
		}
		ch, err = ca.Enroll(ctx, req)
		return err
	}); err != nil {
		return res, err
	}
	act := &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID}
	if err := step(provisioning.StepActivate, func() (err error) {
		if act.Secret, err = provisioning.ActivateCredential(tpm, ek, iak, ch.CredentialBlob, ch.EncryptedSecret); err != nil {
			return err
		}
		err, ek = ek.Flush(tpm), nil
		return err
	}); err != nil {
		return res, err
	}
	if err := step(provisioning.StepCertify, func() (err error) {
		act.CertifyInfo, act.CertifySignature, err = provisioning.Certify(tpm, iak, idevid, ch.Nonce)
		return err
	}); err != nil {
		return res, err
	}
	if err := step(provisioning.StepIssue, func() (err error) {
		if res.Certificates, err = ca.Activate(ctx, act); err != nil {
			return err
		}
		return checkIssued(res.Certificates, iak, idevid)
	}); err != nil {
		return res, err
	}
	if err := step(provisioning.StepPersist, func() error {
		if err := provisioning.Persist(tpm, iak, layout.IAKHandle); err != nil {
			return err
		}
		return provisioning.Persist(tpm, idevid, layout.IDevIDHandle)
	}); err != nil {
		return res, err
	}
	iakPub, idevidPub := iak.PublicBytes, idevid.PublicBytes
	if err := step(provisioning.StepFlushDone, func() error {
		err := errors.Join(idevid.Flush(tpm), iak.Flush(tpm))
		idevid, iak = nil, nil
		return err
	}); err != nil {
		return res, err
	}
	if err := step(provisioning.StepNVWrite, func() error {
		if err := provisioning.WriteCertNV(tpm, layout.IAKCertIndex, res.Certificates.IAKCert, layout.WriteLock); err != nil {
			return err
		}
		return provisioning.WriteCertNV(tpm, layout.IDevIDCertIndex, res.Certificates.IDevIDCert, layout.WriteLock)
	}); err != nil {
		return res, err
	}
	err = step(provisioning.StepReadBack, func() (err error) {
		if res.State, err = provisioning.Inspect(tpm, layout); err != nil {
			return err
		}
		return res.State.Matches(iakPub, idevidPub, res.Certificates, layout.WriteLock)
	})
	return res, err
}

// checkIssued is the station's refusal of certificates issued for other keys than the board's (station
// flow.go, certForKey), before anything goes into NV.
func checkIssued(certs *provisioning.Certificates, iak, idevid *provisioning.Key) error {
	for _, c := range []struct {
		what string
		der  []byte
		key  *provisioning.Key
	}{{"IAK", certs.IAKCert, iak}, {"IDevID", certs.IDevIDCert, idevid}} {
		x, err := x509.ParseCertificate(c.der)
		if err != nil {
			return fmt.Errorf("CA sent an unparseable %s certificate: %w", c.what, err)
		}
		want, err := tpm2.Pub(c.key.Public)
		if err != nil {
			return err
		}
		if got, ok := x.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !got.Equal(want) {
			return fmt.Errorf("CA issued the %s certificate for another key", c.what)
		}
	}
	return nil
}
