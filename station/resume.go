// Resume: what a run finds already done for its board. Certificates the CA issued in the current attempt
// for the very keys just re-created are written instead of enrolling again; a board the inventory calls
// provisioned whose TPM still holds what was recorded is a no-op success. (Reconcile, which resumes the
// boards a stopped station left in progress, is in station.go.)

package station

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
)

// resume runs before enrolling: with certificates already issued for these keys, the enrollment steps are
// skipped.
func (r *run) resume() *Failure {
	r.issued = r.issuedFor(r.board)
	if r.issued == nil {
		return nil
	}
	r.resumed = true
	// Only credential activation needs the EK; free its slot for Persist (3 object slots).
	if err := r.ek.Flush(r.tpm); err != nil {
		return tpmFailure(err)
	}
	r.ek = nil
	return nil
}

// issuedFor returns certificates recorded in this attempt whose keys are the ones just created, or nil.
func (r *run) issuedFor(board *records.Board) *provisioning.Certificates {
	certs, err := r.s.cfg.Inventory.ListCertificates(r.ctx, r.job.Serial)
	if err != nil || board == nil {
		return nil
	}
	iak, idevid := records.AttemptCertificates(certs, board.Attempt)
	if iak == nil || idevid == nil || !certForKey(iak.DER, r.iak) || !certForKey(idevid.DER, r.idevid) {
		return nil
	}
	r.note(records.Event{Kind: "board.resume_issued", Payload: payload(map[string]any{"attempt": board.Attempt})})
	return &provisioning.Certificates{IAKCert: iak.DER, IDevIDCert: idevid.DER}
}

func certForKey(der []byte, k *provisioning.Key) bool {
	if k == nil {
		return false
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	want, err := tpmwire.PublicKey(k.PublicBytes)
	if err != nil {
		return false
	}
	got, ok := x.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && got.Equal(want)
}

// alreadyProvisioned checks a board the inventory calls provisioned: if its TPM still holds the recorded
// keys and certificates the run is a no-op success.
func (r *run) alreadyProvisioned() bool {
	b, err := r.s.cfg.Inventory.GetBoardBySerial(r.ctx, r.job.Serial)
	if err != nil {
		return false
	}
	certs, err := r.s.cfg.Inventory.ListCertificates(r.ctx, r.job.Serial)
	if err != nil {
		return false
	}
	iak, idevid := records.AttemptCertificates(certs, b.Attempt)
	want := &provisioning.Certificates{IAKCert: certDER(iak), IDevIDCert: certDER(idevid)}
	st, err := provisioning.Inspect(r.tpm, r.prof.Layout())
	if err != nil || st.IAKCert == nil || st.IDevIDCert == nil {
		return false
	}
	if !bytes.Equal(st.IAKCert.Data, want.IAKCert) || !bytes.Equal(st.IDevIDCert.Data, want.IDevIDCert) {
		return false
	}
	r.out.IAKCertSerial, r.out.IDevIDCertSerial = certSerial(want.IAKCert), certSerial(want.IDevIDCert)
	return true
}

// certDER is c's DER, or nil when the attempt has no such certificate.
func certDER(c *records.Certificate) []byte {
	if c == nil {
		return nil
	}
	return c.DER
}

func certSerial(der []byte) string {
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", x.SerialNumber)
}
