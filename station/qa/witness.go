package qa

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// Witness is the upstream CA's witness endpoint (*provisioning.Client).
type Witness interface {
	Witness(ctx context.Context, req *provisioning.WitnessRequest) (*provisioning.WitnessResponse, error)
}

// ChainReader is what the witness checks need of the inventory.
type ChainReader interface {
	VerifyChain(ctx context.Context, batch string) (records.ChainStatus, error)
	EventHashAt(ctx context.Context, seq int64) (string, bool, error)
}

// ErrWitnessMismatch: the local audit chain no longer holds a head the CA witnessed.
var ErrWitnessMismatch = errors.New("the audit chain does not hold a witnessed head")

// CheckWitnessed checks that the local chain, which must verify, still holds every head in heads: the
// event at each head's seq exists and has the head's hash. Because each event's hash covers the one
// before, a chain that holds a head holds every event up to it unchanged. A finding is one line:
//
//   - a head past the chain's end: events were cut off, or an older database file was put back;
//   - a head whose seq hashes otherwise: the chain was rewritten (edited and its hashes recomputed).
func CheckWitnessed(ctx context.Context, st ChainReader, heads []provisioning.WitnessedHead) ([]string, error) {
	chain, err := st.VerifyChain(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range heads {
		signedAt := h.SignedAt.UTC().Format(time.RFC3339)
		if h.Seq > chain.ChainSeq {
			out = append(out, fmt.Sprintf("witness: head seq %d (signed %s) is past the local chain's last event, seq %d: events were cut off or an older database was put back",
				h.Seq, signedAt, chain.ChainSeq))
			continue
		}
		got, ok, err := st.EventHashAt(ctx, h.Seq)
		if err != nil {
			return nil, err
		}
		if !ok || got != h.Hash {
			out = append(out, fmt.Sprintf("witness: event seq %d hashes to %s locally, the CA witnessed %s (signed %s): the chain was rewritten",
				h.Seq, short(got), short(h.Hash), signedAt))
		}
	}
	return out, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	if h == "" {
		return "(none)"
	}
	return h
}

// PushCheckpoint signs the inventory's current chain head as station's checkpoint and has the CA witness
// it. It first checks that the chain holds every head the CA witnessed before (CheckWitnessed) and
// refuses (ErrWitnessMismatch) otherwise: a rewritten chain must never get a newer witnessed head, which
// would hide the older ones behind it. It returns the checkpoint witnessed.
func PushCheckpoint(ctx context.Context, st ChainReader, w Witness, station string, sg signed.Signer) (*provisioning.Checkpoint, error) {
	before, err := w.Witness(ctx, &provisioning.WitnessRequest{})
	if err != nil {
		return nil, &PushError{Err: err}
	}
	findings, err := CheckWitnessed(ctx, st, before.Heads)
	if err != nil {
		return nil, err
	}
	if len(findings) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrWitnessMismatch, findings[0])
	}
	chain, err := st.VerifyChain(ctx, "")
	if err != nil {
		return nil, err
	}
	if chain.ChainSeq == 0 {
		return nil, nil // nothing to witness yet
	}
	cp := &provisioning.Checkpoint{Station: station, Seq: chain.ChainSeq, Hash: chain.ChainHead, Time: clock.Now()}
	req, err := SignCheckpoint(cp, sg)
	if err != nil {
		return nil, err
	}
	if _, err := w.Witness(ctx, req); err != nil {
		return nil, &PushError{Err: err}
	}
	return cp, nil
}

// SignCheckpoint is the witness request for cp, signed by sg.
func SignCheckpoint(cp *provisioning.Checkpoint, sg signed.Signer) (*provisioning.WitnessRequest, error) {
	body := cp.Body()
	sig, err := sg.Sign(bytes.NewReader(body), cp.Time)
	if err != nil {
		return nil, fmt.Errorf("signing the audit checkpoint: %w", err)
	}
	return &provisioning.WitnessRequest{Checkpoint: body, Signature: sig}, nil
}

// VerifyWitnessed is VerifyBatch followed by the witness check against the heads the CA holds for this
// station; the witness's findings join the verification's (Witness).
func VerifyWitnessed(ctx context.Context, st interface {
	Store
	ChainReader
}, w Witness, batch string) (*Verification, error) {
	v, err := VerifyBatch(ctx, st, batch)
	if err != nil || v.ChainErr != nil {
		return v, err
	}
	res, err := w.Witness(ctx, &provisioning.WitnessRequest{})
	if err != nil {
		return nil, &PushError{Err: err}
	}
	v.WitnessChecked = len(res.Heads)
	if v.WitnessFindings, err = CheckWitnessed(ctx, st, res.Heads); err != nil {
		return nil, err
	}
	return v, nil
}

// ErrCheckpointMismatch: a report's signed checkpoint does not check out against its signature, its
// report or the inventory's chain.
var ErrCheckpointMismatch = errors.New("the report's checkpoint does not check out")

// CheckReportCheckpoint checks the signed checkpoint a report carries (reports.AuditInfo Checkpoint):
// it is a canonical checkpoint; its signature verifies and is by the certificate signer (the report's
// own signer, when given) under the checkpoint's station name; it covers the report's batch (its seq is
// at or past the batch's last event in the report); and the inventory's chain, which must verify, holds
// it: the event at its seq has its hash (st nil skips this last check). Each failure wraps ErrCheckpointMismatch and says which.
func CheckReportCheckpoint(ctx context.Context, st ChainReader, a *reports.AuditInfo, signer *x509.Certificate) (*provisioning.Checkpoint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCheckpointMismatch, fmt.Sprintf(format, args...))
	}
	cp, err := provisioning.ParseCheckpoint([]byte(a.Checkpoint))
	if err != nil {
		return nil, bad("%v", err)
	}
	ver, err := signed.Verify([]byte(a.Checkpoint), a.CheckpointSignature, nil)
	if err != nil {
		return cp, bad("its signature does not verify: %v", err)
	}
	if signer != nil && !bytes.Equal(ver.Signer().Raw, signer.Raw) {
		return cp, bad("it is signed by %q, the report by %q", ver.Signer().Subject.CommonName, signer.Subject.CommonName)
	}
	if ver.Signer().Subject.CommonName != cp.Station {
		return cp, bad("it names station %q but is signed by %q", cp.Station, ver.Signer().Subject.CommonName)
	}
	if cp.Seq < a.ChainSeq {
		return cp, bad("it is at seq %d, before the batch's last event in the report (seq %d)", cp.Seq, a.ChainSeq)
	}
	if st == nil {
		return cp, nil
	}
	chain, err := st.VerifyChain(ctx, "")
	if err != nil {
		return cp, err
	}
	if cp.Seq > chain.ChainSeq {
		return cp, bad("its seq %d is past the inventory chain's last event, seq %d: events were cut off or an older database was put back", cp.Seq, chain.ChainSeq)
	}
	got, ok, err := st.EventHashAt(ctx, cp.Seq)
	if err != nil {
		return cp, err
	}
	if !ok || got != cp.Hash {
		return cp, bad("event seq %d hashes to %s in the inventory, the checkpoint says %s: the chain was rewritten", cp.Seq, short(got), short(cp.Hash))
	}
	return cp, nil
}
