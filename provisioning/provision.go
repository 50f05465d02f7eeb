package provisioning

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpmline/tpmline/internal/clock"
)

// CA is the upstream CA as the device side sees it: the two rounds of the enrollment protocol. *Client
// implements it over HTTPS; tests and the headless station may plug in the CA package directly.
type CA interface {
	Enroll(ctx context.Context, req *EnrollRequest) (*Challenge, error)
	Activate(ctx context.Context, req *ActivateRequest) (*Certificates, error)
}

// Step names, as Provision reports them to Options.Step and in Result.Steps. The station journals the same
// names when it runs the steps itself.
const (
	StepFlush     = "flush"
	StepTPMInfo   = "tpm-info"
	StepEKCerts   = "ek-certs"
	StepEK        = "ek"
	StepEKCheck   = "ek-check"
	StepClear     = "clear"
	StepIAK       = "iak"
	StepIDevID    = "idevid"
	StepEnroll    = "enroll"
	StepActivate  = "activate-credential"
	StepCertify   = "certify"
	StepIssue     = "issue"
	StepPersist   = "persist"
	StepNVWrite   = "nv-write"
	StepReadBack  = "read-back"
	StepFlushDone = "flush-done"
)

// Options drive Provision.
type Options struct {
	Serial  string
	Product string
	// Rework clears the layout's handles and indices first and asks the CA to re-enroll this EK under the
	// same serial.
	Rework bool
	// KeyAlg is the IAK and IDevID template; "" is DefaultKeyAlg.
	KeyAlg KeyAlg
	// EKIndex picks the EK certificate (and so the EK) to enroll with; 0 chooses one whose EK has the IAK's
	// name algorithm, ECC before RSA (creating an RSA EK takes 2-30 s on real chips).
	EKIndex uint32
	// Layout is where the identity goes; the zero value is DefaultLayout.
	Layout Layout
	// Step, when set, is called before (start=true) and after (start=false) each step.
	Step func(name string, start bool)
	// Now is the clock for Result.Steps; nil is time.Now.
	Now func() time.Time
}

// StepTime is how long one step took.
type StepTime struct {
	Name     string
	Duration time.Duration
}

// Result is what Provision did to the board.
type Result struct {
	Props        *Properties
	EKCerts      []NVCert
	EKCert       NVCert // the certificate enrolled with
	EKAlg        EKAlg
	EKPublic     []byte
	IAKPublic    []byte
	IDevIDPublic []byte
	Certificates *Certificates
	State        *BoardState // read back after writing
	Steps        []StepTime
}

// Provision runs the whole device side of the enrollment for one board: flush, TPM info, EK certificates,
// EK, EK check, IAK, IDevID, enroll (round 1), credential activation, certify, round 2, persist, certificate
// NV writes, read-back. At most 3 transient objects are loaded at once (EK, IAK, IDevID) and all are flushed
// on return, success or not. Every step is also exported on its own: the station runs them one by one and
// journals each.
func Provision(ctx context.Context, tpm transport.TPM, ca CA, opts Options) (res *Result, err error) {
	if ca == nil {
		return nil, errors.New("provisioning: no CA")
	}
	if opts.Serial == "" || len(opts.Serial) > MaxSerialLen {
		return nil, fmt.Errorf("provisioning: serial %q must be 1..%d characters", opts.Serial, MaxSerialLen)
	}
	if len(opts.Product) > MaxProductLen {
		return nil, fmt.Errorf("provisioning: product name longer than %d characters", MaxProductLen)
	}
	alg, err := ParseKeyAlg(string(opts.KeyAlg))
	if err != nil {
		return nil, fmt.Errorf("provisioning: %w", err)
	}
	layout := opts.Layout
	if layout == (Layout{}) {
		layout = DefaultLayout()
	}
	if err := layout.validate(); err != nil {
		return nil, fmt.Errorf("provisioning: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = clock.Now
	}
	res = &Result{}
	step := func(name string, f func() error) error {
		if opts.Step != nil {
			opts.Step(name, true)
		}
		t0 := now()
		err := f()
		res.Steps = append(res.Steps, StepTime{Name: name, Duration: now().Sub(t0)})
		if opts.Step != nil {
			opts.Step(name, false)
		}
		if err != nil {
			return fmt.Errorf("board %s: step %s: %w", opts.Serial, name, err)
		}
		return nil
	}

	var ek, iak, idevid *Key
	defer func() {
		// Flush in reverse load order; a flush failure only matters if nothing else went wrong.
		for _, k := range []*Key{idevid, iak, ek} {
			if ferr := k.Flush(tpm); ferr != nil && err == nil {
				err = fmt.Errorf("board %s: %w", opts.Serial, ferr)
			}
		}
	}()

	if err := step(StepFlush, func() error { return FlushTransients(tpm) }); err != nil {
		return res, err
	}
	if err := step(StepTPMInfo, func() (err error) { res.Props, err = ReadProperties(tpm); return }); err != nil {
		return res, err
	}
	if err := step(StepEKCerts, func() (err error) { res.EKCerts, err = ReadEKCertificates(tpm); return }); err != nil {
		return res, err
	}
	nameAlg, _ := alg.NameAlg()
	if err := step(StepEK, func() error {
		c, ekAlg, err := ChooseEKCert(res.EKCerts, nameAlg, opts.EKIndex)
		if err != nil {
			return err
		}
		res.EKCert, res.EKAlg = c, ekAlg
		if ek, err = CreateEK(tpm, ekAlg); err != nil {
			return err
		}
		res.EKPublic = ek.PublicBytes
		return nil
	}); err != nil {
		return res, err
	}
	if err := step(StepEKCheck, func() error { return CheckEKMatchesCert(res.EKCert.Data, &ek.Public) }); err != nil {
		return res, err
	}
	if opts.Rework {
		if err := step(StepClear, func() error { return Clear(tpm, layout) }); err != nil {
			return res, err
		}
	}
	if err := step(StepIAK, func() (err error) {
		if iak, err = CreateIAK(tpm, alg); err == nil {
			res.IAKPublic = iak.PublicBytes
		}
		return
	}); err != nil {
		return res, err
	}
	if err := step(StepIDevID, func() (err error) {
		if idevid, err = CreateIDevID(tpm, alg); err == nil {
			res.IDevIDPublic = idevid.PublicBytes
		}
		return
	}); err != nil {
		return res, err
	}

	var ch *Challenge
	if err := step(StepEnroll, func() (err error) {
		req := &EnrollRequest{
			Version:      ProtocolVersion,
			Serial:       opts.Serial,
			Product:      opts.Product,
			Rework:       opts.Rework,
			EKCert:       res.EKCert.Data,
			EKPublic:     ek.PublicBytes,
			IAKPublic:    iak.PublicBytes,
			IDevIDPublic: idevid.PublicBytes,
			TPM:          res.Props.Info,
		}
		for _, c := range res.EKCerts {
			if c.IsChain() {
				req.EKChain = append(req.EKChain, c.Data)
			}
		}
		ch, err = ca.Enroll(ctx, req)
		if err == nil && ch == nil {
			err = errors.New("CA sent no challenge")
		}
		return err
	}); err != nil {
		return res, err
	}

	act := &ActivateRequest{Version: ProtocolVersion, SessionID: ch.SessionID}
	if err := step(StepActivate, func() (err error) {
		act.Secret, err = ActivateCredential(tpm, ek, iak, ch.CredentialBlob, ch.EncryptedSecret)
		if err != nil {
			return err
		}
		// The EK has done its job; free its slot before anything else is loaded.
		err = ek.Flush(tpm)
		ek = nil
		return err
	}); err != nil {
		return res, err
	}
	if err := step(StepCertify, func() (err error) {
		act.CertifyInfo, act.CertifySignature, err = Certify(tpm, iak, idevid, ch.Nonce)
		return err
	}); err != nil {
		return res, err
	}
	if err := step(StepIssue, func() (err error) {
		res.Certificates, err = ca.Activate(ctx, act)
		if err != nil {
			return err
		}
		return CheckIssued(res.Certificates, &iak.Public, &idevid.Public)
	}); err != nil {
		return res, err
	}

	if err := step(StepPersist, func() error {
		if err := Persist(tpm, iak, layout.IAKHandle); err != nil {
			return fmt.Errorf("IAK: %w", err)
		}
		if err := Persist(tpm, idevid, layout.IDevIDHandle); err != nil {
			return fmt.Errorf("IDevID: %w", err)
		}
		return nil
	}); err != nil {
		return res, err
	}
	if err := step(StepFlushDone, func() error {
		err := errors.Join(idevid.Flush(tpm), iak.Flush(tpm))
		idevid, iak = nil, nil
		return err
	}); err != nil {
		return res, err
	}
	if err := step(StepNVWrite, func() error {
		if err := WriteCertNV(tpm, layout.IAKCertIndex, res.Certificates.IAKCert, layout.WriteLock); err != nil {
			return fmt.Errorf("IAK certificate: %w", err)
		}
		if err := WriteCertNV(tpm, layout.IDevIDCertIndex, res.Certificates.IDevIDCert, layout.WriteLock); err != nil {
			return fmt.Errorf("IDevID certificate: %w", err)
		}
		return nil
	}); err != nil {
		return res, err
	}
	if err := step(StepReadBack, func() (err error) {
		res.State, err = Inspect(tpm, layout)
		if err != nil {
			return err
		}
		return res.State.Matches(res.IAKPublic, res.IDevIDPublic, res.Certificates, layout.WriteLock)
	}); err != nil {
		return res, err
	}
	return res, nil
}

// ErrNoEKCert matches the error of ChooseEKCert and ReadChosenEKCert when the TPM carries no certificate
// the station can enroll with (as opposed to a TPM that failed to answer).
var ErrNoEKCert = errors.New("no usable EK certificate")

type noEKCert string

func (e noEKCert) Error() string        { return string(e) }
func (e noEKCert) Is(target error) bool { return target == ErrNoEKCert }

// ChooseEKCert picks the EK certificate to enroll with: the one at index if index is not 0, else the first
// certificate whose EK template has the name algorithm nameAlg, ECC before RSA, low range before high.
func ChooseEKCert(certs []NVCert, nameAlg tpm2.TPMAlgID, index uint32) (NVCert, EKAlg, error) {
	type cand struct {
		c    NVCert
		alg  EKAlg
		rank int
	}
	var cands []cand
	for _, c := range certs {
		alg, ok := EKAlgForIndex(c.Index)
		if !ok || (index != 0 && c.Index != index) {
			continue
		}
		t, err := EKTemplate(alg)
		if err != nil || t.NameAlg != nameAlg {
			continue
		}
		rank := 0
		if t.Type == tpm2.TPMAlgRSA {
			rank = 1
		}
		cands = append(cands, cand{c, alg, rank})
	}
	if len(cands) == 0 {
		if index != 0 {
			return NVCert{}, "", noEKCert(fmt.Sprintf("no usable EK certificate at NV %#x with name algorithm %v", index, nameAlg))
		}
		return NVCert{}, "", noEKCert(fmt.Sprintf("no EK certificate whose EK has name algorithm %v (found %d certificates); the IAK needs the EK's name algorithm", nameAlg, len(certs)))
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].rank < cands[j].rank })
	return cands[0].c, cands[0].alg, nil
}

// CheckIssued refuses certificates the CA issued for other keys than ours (or that are not certificates),
// before they go into NV.
func CheckIssued(certs *Certificates, iak, idevid *tpm2.TPMTPublic) error {
	if iak == nil || idevid == nil {
		return errors.New("checking issued certificates: IAK or IDevID public area missing")
	}
	if certs == nil {
		return errors.New("CA sent no certificates")
	}
	for _, c := range []struct {
		what string
		der  []byte
		pub  *tpm2.TPMTPublic
	}{{"IAK", certs.IAKCert, iak}, {"IDevID", certs.IDevIDCert, idevid}} {
		if len(c.der) == 0 || len(c.der) > MaxCertBytes {
			return fmt.Errorf("CA sent a %d-byte %s certificate", len(c.der), c.what)
		}
		x, err := x509.ParseCertificate(c.der)
		if err != nil {
			return fmt.Errorf("CA sent an unparseable %s certificate: %w", c.what, err)
		}
		want, err := tpm2.Pub(*c.pub)
		if err != nil {
			return fmt.Errorf("%s public area: %w", c.what, err)
		}
		got, ok := x.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !got.Equal(want) {
			return fmt.Errorf("CA issued the %s certificate for another key", c.what)
		}
	}
	return nil
}

// Matches checks a read-back board state against what was written.
func (s *BoardState) Matches(iakPub, idevidPub []byte, certs *Certificates, writeLocked bool) error {
	switch {
	case s.IAK == nil || !bytes.Equal(s.IAK.PublicBytes, iakPub):
		return errors.New("read-back: the key at the IAK handle is not the enrolled IAK")
	case s.IDevID == nil || !bytes.Equal(s.IDevID.PublicBytes, idevidPub):
		return errors.New("read-back: the key at the IDevID handle is not the enrolled IDevID")
	case s.IAKCert == nil || !bytes.Equal(s.IAKCert.Data, certs.IAKCert):
		return errors.New("read-back: the IAK certificate in NV differs from the issued one")
	case s.IDevIDCert == nil || !bytes.Equal(s.IDevIDCert.Data, certs.IDevIDCert):
		return errors.New("read-back: the IDevID certificate in NV differs from the issued one")
	case writeLocked && (!s.IAKCert.Attributes.WriteLocked || !s.IDevIDCert.Attributes.WriteLocked):
		return errors.New("read-back: a certificate index is not write-locked")
	}
	return nil
}
