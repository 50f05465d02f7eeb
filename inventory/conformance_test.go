package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		url, want, notWant string
	}{
		{"mysql://x/y", "want sqlite://PATH or postgres://", ""},
		{"sqlite://", "want sqlite://PATH", ""},
		{"sqlite:///no/such/dir/inv.db", "directory /no/such/dir does not exist", ""},
		{"sqlite://x.db?mode=memory", "without query parameters", ""},
		{"postgres://station:s3cret@127.0.0.1:1/inv?sslmode=disable&connect_timeout=2",
			"database unreachable at postgres://station:xxxxx@127.0.0.1:1/inv", "s3cret"},
	} {
		s, err := Open(ctx, tc.url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %q, want it to contain %q", tc.url, err, tc.want)
		}
		if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
			t.Errorf("Open(%q) = %q, leaks %q", tc.url, err, tc.notWant)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q) error spans lines: %q", tc.url, err)
		}
	}
}

func TestBatchLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		b := mustOpenBatch(t, s, "B1", "st1", 3)
		if b.State != "open" || b.Quantity != 3 || b.Product != "gw-100" || b.OpenedAt.IsZero() || !b.ClosedAt.IsZero() {
			t.Errorf("opened batch = %+v", b)
		}
		if _, err := s.OpenBatch(ctx, NewBatch{ID: "B1", Product: "p", WorkOrder: "w", Operator: "o", Station: "st1"}); !errors.Is(err, ErrBatchExists) {
			t.Errorf("OpenBatch duplicate = %v, want ErrBatchExists", err)
		}
		if _, err := s.OpenBatch(ctx, NewBatch{ID: "B2", Product: "", WorkOrder: "w", Operator: "o", Station: "st1"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenBatch without product = %v, want ErrInvalid", err)
		}
		if _, err := s.GetBatch(ctx, "nope"); !errors.Is(err, ErrBatchNotFound) {
			t.Errorf("GetBatch unknown = %v", err)
		}
		// Boards in every state, then the counts.
		for i, end := range []BoardState{StateProvisioned, StateFailed, StateInProgress} {
			serial := fmt.Sprintf("S%d", i)
			if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: serial, EKPubSHA256: ekHash(i), Batch: "B1", Station: "st1", Slot: i}); err != nil {
				t.Fatal(err)
			}
			switch end {
			case StateProvisioned:
				provision(t, s, serial, i)
			case StateFailed:
				if err := s.MarkFailed(ctx, serial, "ca_refused", "CA said no"); err != nil {
					t.Fatal(err)
				}
			}
		}
		mustOpenBatch(t, s, "B2", "st2", 10)
		list, err := s.ListBatches(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "B1" || list[1].ID != "B2" {
			t.Fatalf("ListBatches = %+v", list)
		}
		got := list[0]
		if got.Quantity != 3 || got.Done != 2 || got.Passed != 1 || got.Failed != 1 || got.InProgress != 1 || got.Stopped != 0 {
			t.Errorf("B1 counts = %+v", got)
		}
		if l2 := list[1]; l2.Done != 0 || l2.InProgress != 0 || l2.Quantity != 10 {
			t.Errorf("B2 counts = %+v", l2)
		}
		closed, err := s.CloseBatch(ctx, "B1")
		if err != nil {
			t.Fatal(err)
		}
		if closed.State != "closed" || closed.ClosedAt.IsZero() {
			t.Errorf("closed batch = %+v", closed)
		}
		if _, err := s.CloseBatch(ctx, "B1"); !errors.Is(err, ErrBatchClosed) {
			t.Errorf("CloseBatch twice = %v, want ErrBatchClosed", err)
		}
		if _, err := s.CloseBatch(ctx, "nope"); !errors.Is(err, ErrBatchNotFound) {
			t.Errorf("CloseBatch unknown = %v, want ErrBatchNotFound", err)
		}
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "S9", EKPubSHA256: ekHash(9), Batch: "B1", Station: "st1"}); !errors.Is(err, ErrBatchClosed) {
			t.Errorf("claim into closed batch = %v, want ErrBatchClosed", err)
		}
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "S9", EKPubSHA256: ekHash(9), Batch: "B404", Station: "st1"}); !errors.Is(err, ErrBatchNotFound) {
			t.Errorf("claim into unknown batch = %v, want ErrBatchNotFound", err)
		}
		open, err := s.ListBatches(ctx, "open")
		if err != nil || len(open) != 1 || open[0].ID != "B2" {
			t.Errorf("ListBatches(open) = %+v, %v", open, err)
		}
		var kinds []string
		s.ListEvents(ctx, EventFilter{Batch: "B1"}, func(e *Event) error {
			if strings.HasPrefix(e.Kind, "batch.") {
				kinds = append(kinds, e.Kind)
			}
			return nil
		})
		if strings.Join(kinds, ",") != "batch.opened,batch.closed" {
			t.Errorf("batch events = %v", kinds)
		}
	})
}

// provision walks board serial (claimed, attempt current) through the whole happy path.
func provision(t testing.TB, s *Store, serial string, i int) {
	t.Helper()
	ctx := context.Background()
	pub := ekPublic(i)
	if err := s.SetBoardEK(ctx, serial, []byte("ek-cert"), pub); err != nil {
		t.Fatal(err)
	}
	for _, k := range []KeyKind{KindIAK, KindIDevID} {
		if err := s.SaveKey(ctx, serial, Key{Kind: k, Public: []byte("pub-" + k), Handle: 0x81020000, Name: []byte("name")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SaveCertificate(ctx, serial, k, testCert(t, int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.MarkProvisioned(ctx, serial); err != nil {
		t.Fatal(err)
	}
}

func TestClaimRules(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 100)
		claim := func(serial string, ek int, station string, slot int, rework bool) (*Board, error) {
			return s.ClaimBoard(ctx, ClaimRequest{Serial: serial, EKPubSHA256: ekHash(ek), Batch: "B1", Station: station, Slot: slot, Rework: rework})
		}
		b, err := claim("A", 1, "st1", 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if b.State != StateInProgress || b.Attempt != 1 || b.ReworkCount != 0 || b.EKPubSHA256 != ekHash(1) || b.Station != "st1" {
			t.Errorf("new board = %+v", b)
		}

		// Clone: the same EK under a second serial, named in the typed error; rework does not lift it.
		for _, rework := range []bool{false, true} {
			_, err = claim("B", 1, "st2", 0, rework)
			var ekb *EKBoundError
			if !errors.Is(err, ErrEKBoundToOtherSerial) || !errors.As(err, &ekb) || ekb.OtherSerial != "A" {
				t.Errorf("clone claim (rework %v) = %v, want ErrEKBoundToOtherSerial naming A", rework, err)
			} else if !strings.Contains(err.Error(), "serial A") {
				t.Errorf("clone error %q does not name serial A", err)
			}
		}
		if _, err := s.GetBoardBySerial(ctx, "B"); !errors.Is(err, ErrBoardNotFound) {
			t.Errorf("a refused clone left a board behind: %v", err)
		}

		// Held by st1 slot 0: another station or another slot is refused; the holder resumes.
		var ip *InProgressError
		if _, err := claim("A", 1, "st2", 0, false); !errors.As(err, &ip) || ip.Station != "st1" || !errors.Is(err, ErrBoardInProgressElsewhere) {
			t.Errorf("claim held elsewhere = %v, want ErrBoardInProgressElsewhere naming st1", err)
		}
		if _, err := claim("A", 1, "st1", 3, false); !errors.Is(err, ErrBoardInProgressElsewhere) {
			t.Errorf("claim from another slot = %v, want ErrBoardInProgressElsewhere", err)
		}
		if b, err := claim("A", 1, "st1", 0, false); err != nil || b.Attempt != 1 {
			t.Errorf("holder resume = %+v, %v; want attempt 1", b, err)
		}

		// Swap: the known serial with a new EK, in progress or not, is refused without rework.
		if _, err := claim("A", 2, "st1", 0, false); !errors.Is(err, ErrSerialBoundToOtherEK) {
			t.Errorf("swap while in progress = %v", err)
		}
		provision(t, s, "A", 1)
		var sb *SerialBoundError
		if _, err := claim("A", 2, "st1", 0, false); !errors.As(err, &sb) || sb.BoundEK != ekHash(1) || !errors.Is(err, ErrSerialBoundToOtherEK) {
			t.Errorf("swap = %v, want ErrSerialBoundToOtherEK naming the bound EK", err)
		}
		// Same board again without rework: already provisioned.
		if _, err := claim("A", 1, "st1", 0, false); !errors.Is(err, ErrAlreadyProvisioned) {
			t.Errorf("re-claim provisioned = %v, want ErrAlreadyProvisioned", err)
		}

		// Rework with a replaced TPM: the serial takes the new EK, the old EK is free, attempt and rework count move.
		b, err = claim("A", 2, "st2", 1, true)
		if err != nil {
			t.Fatalf("rework with new EK: %v", err)
		}
		if b.EKPubSHA256 != ekHash(2) || b.Attempt != 2 || b.ReworkCount != 1 || b.State != StateInProgress ||
			b.Station != "st2" || b.Slot != 1 || len(b.EKPublic) != 0 {
			t.Errorf("reworked board = %+v", b)
		}
		if got, err := s.GetBoardByEKHash(ctx, ekHash(2)); err != nil || got.Serial != "A" {
			t.Errorf("GetBoardByEKHash(new) = %+v, %v", got, err)
		}
		if _, err := s.GetBoardByEKHash(ctx, ekHash(1)); !errors.Is(err, ErrBoardNotFound) {
			t.Errorf("old EK still bound: %v", err)
		}
		// The reworked attempt starts empty: the old attempt's certificates do not count.
		if _, err := s.MarkProvisioned(ctx, "A"); !errors.Is(err, ErrIncomplete) {
			t.Errorf("MarkProvisioned on a fresh rework attempt = %v, want ErrIncomplete", err)
		}
		if certs, _ := s.ListCertificates(ctx, "A"); len(certs) != 2 || certs[0].Attempt != 1 {
			t.Errorf("history lost: certificates = %d", len(certs))
		}

		// Failed boards are retried (new attempt) without rework; stopped ones need a rework.
		if err := s.MarkFailed(ctx, "A", "nv_write", "NV write failed"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetBoardBySerial(ctx, "A"); got.State != StateFailed || got.ReasonCode != "nv_write" || got.ReasonText != "NV write failed" {
			t.Errorf("failed board = %+v", got)
		}
		if b, err := claim("A", 2, "st1", 0, false); err != nil || b.Attempt != 3 || b.ReworkCount != 1 || b.ReasonCode != "" {
			t.Errorf("retry of failed = %+v, %v", b, err)
		}
		if err := s.MarkStopped(ctx, "A", "qa_hold", "QA hold"); err != nil {
			t.Fatal(err)
		}
		if _, err := claim("A", 2, "st1", 0, false); !errors.Is(err, ErrBoardStopped) {
			t.Errorf("claim stopped = %v, want ErrBoardStopped", err)
		}
		if b, err := claim("A", 2, "st1", 0, true); err != nil || b.ReworkCount != 2 || b.Attempt != 4 {
			t.Errorf("rework of stopped = %+v, %v", b, err)
		}

		// Bad input is refused before any SQL.
		for _, req := range []ClaimRequest{
			{Serial: "", EKPubSHA256: ekHash(5), Batch: "B1", Station: "st1"},
			{Serial: "X", EKPubSHA256: "abc", Batch: "B1", Station: "st1"},
			{Serial: "X\x00", EKPubSHA256: ekHash(5), Batch: "B1", Station: "st1"},
			{Serial: "X", EKPubSHA256: ekHash(5), Batch: "B1", Station: ""},
			{Serial: "X", EKPubSHA256: ekHash(5), Batch: "B1", Station: "st1", Slot: -1},
		} {
			if _, err := s.ClaimBoard(ctx, req); !errors.Is(err, ErrInvalid) {
				t.Errorf("ClaimBoard(%+v) = %v, want ErrInvalid", req, err)
			}
		}
		// Uppercase hex is the same EK.
		if b, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "C", EKPubSHA256: strings.ToUpper(ekHash(7)), Batch: "B1", Station: "st1"}); err != nil || b.EKPubSHA256 != ekHash(7) {
			t.Errorf("uppercase EK hash = %+v, %v", b, err)
		}

		// Every refusal is in the audit log with its reason.
		reasons := map[string]int{}
		s.ListEvents(ctx, EventFilter{}, func(e *Event) error {
			if e.Kind == EventClaimRefused {
				var p struct{ Reason string }
				json.Unmarshal(e.Payload, &p)
				reasons[p.Reason]++
			}
			return nil
		})
		want := map[string]int{"ek_bound_to_other_serial": 2, "in_progress_elsewhere": 2, "serial_bound_to_other_ek": 2,
			"already_provisioned": 1, "stopped": 1}
		if fmt.Sprint(reasons) != fmt.Sprint(want) {
			t.Errorf("refusal events = %v, want %v", reasons, want)
		}
		if _, err := s.VerifyChain(ctx, ""); err != nil {
			t.Errorf("chain after claims: %v", err)
		}
	})
}

func TestBoardRecord(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 1)
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "SN1", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1", Slot: 2}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBoardTPMInfo(ctx, "SN1", TPMInfo{Manufacturer: "IFX", Vendor: "SLB9672", Firmware: "26.13"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBoardEK(ctx, "SN1", []byte("cert"), ekPublic(2)); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetBoardEK with a key of another hash = %v, want ErrInvalid", err)
		}
		if err := s.SetBoardEK(ctx, "SN1", []byte("ek-cert-der"), ekPublic(1)); err != nil {
			t.Fatal(err)
		}
		id, err := s.StepStarted(ctx, "SN1", "create_iak")
		if err != nil || id == 0 {
			t.Fatalf("StepStarted = %d, %v", id, err)
		}
		if err := s.StepFinished(ctx, "SN1", "create_iak", StepOutcome{Duration: 420 * time.Millisecond, TPMTime: 380 * time.Millisecond, Detail: "ECC P-256"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StepStarted(ctx, "SN1", "enroll_round1"); err != nil {
			t.Fatal(err)
		}
		if err := s.StepFailed(ctx, "SN1", "enroll_round1", StepOutcome{Detail: "CA timeout"}); err != nil {
			t.Fatal(err)
		}
		if err := s.StepFinished(ctx, "SN1", "never_started", StepOutcome{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("finishing a step never started = %v", err)
		}
		steps, err := s.ListSteps(ctx, "SN1")
		if err != nil || len(steps) != 2 {
			t.Fatalf("ListSteps = %+v, %v", steps, err)
		}
		if st := steps[0]; st.Step != "create_iak" || st.Phase != PhaseDone || st.Duration != 420*time.Millisecond ||
			st.TPMTime != 380*time.Millisecond || st.Detail != "ECC P-256" || st.FinishedAt.IsZero() {
			t.Errorf("step 0 = %+v", st)
		}
		if st := steps[1]; st.Phase != PhaseFailed || st.Detail != "CA timeout" || st.Duration < 0 {
			t.Errorf("step 1 = %+v", st)
		}

		// Provisioned only with both keys and both certificates.
		if _, err := s.MarkProvisioned(ctx, "SN1"); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "IAK certificate") {
			t.Errorf("MarkProvisioned with nothing = %v", err)
		}
		for _, k := range []KeyKind{KindIAK, KindIDevID} {
			if err := s.SaveKey(ctx, "SN1", Key{Kind: k, Public: []byte("pub"), Handle: 0x81020001, Name: []byte{0, 0xb, 1}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.SaveCertificate(ctx, "SN1", KindIAK, testCert(t, 0x1234)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkProvisioned(ctx, "SN1"); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "IDevID certificate") ||
			strings.Contains(err.Error(), "IAK certificate") {
			t.Errorf("MarkProvisioned without the IDevID certificate = %v", err)
		}
		if _, err := s.SaveCertificate(ctx, "SN1", KindIDevID, []byte("not DER")); !errors.Is(err, ErrInvalid) {
			t.Errorf("SaveCertificate garbage = %v", err)
		}
		if err := s.SaveKey(ctx, "SN1", Key{Kind: "ek", Public: []byte("p"), Name: []byte("n")}); !errors.Is(err, ErrInvalid) {
			t.Errorf("SaveKey bad kind = %v", err)
		}
		c, err := s.SaveCertificate(ctx, "SN1", KindIDevID, testCert(t, 0xabcdef))
		if err != nil {
			t.Fatal(err)
		}
		if c.SerialHex != "abcdef" || c.NotAfter.Year() != 9999 {
			t.Errorf("certificate = serial %s notAfter %v", c.SerialHex, c.NotAfter)
		}
		b, err := s.MarkProvisioned(ctx, "SN1")
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetBoardBySerial(ctx, "SN1")
		if err != nil {
			t.Fatal(err)
		}
		if b.State != StateProvisioned || got.State != StateProvisioned || got.TPMManufacturer != "IFX" || got.TPMFirmware != "26.13" ||
			string(got.EKCert) != "ek-cert-der" || string(got.EKPublic) != string(ekPublic(1)) || got.Slot != 2 || got.CurrentStep != "enroll_round1" {
			t.Errorf("provisioned board = %+v", got)
		}
		certs, _ := s.ListCertificates(ctx, "SN1")
		keys, _ := s.ListKeys(ctx, "SN1")
		if len(certs) != 2 || certs[1].NotAfter != time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) || len(keys) != 2 || keys[0].Handle != 0x81020001 {
			t.Errorf("certs %+v keys %+v", certs, keys)
		}
		// A provisioned board's record is frozen.
		if _, err := s.StepStarted(ctx, "SN1", "late"); !errors.Is(err, ErrNotInProgress) {
			t.Errorf("StepStarted after provisioning = %v", err)
		}
		if err := s.MarkFailed(ctx, "SN1", "x", "y"); !errors.Is(err, ErrNotInProgress) {
			t.Errorf("MarkFailed after provisioning = %v", err)
		}
		if err := s.SaveKey(ctx, "nobody", Key{Kind: KindIAK, Public: []byte("p"), Name: []byte("n")}); !errors.Is(err, ErrBoardNotFound) {
			t.Errorf("SaveKey unknown board = %v", err)
		}
		// The whole history reads back from the log, in order.
		var kinds []string
		if err := s.ListEvents(ctx, EventFilter{Serial: "SN1"}, func(e *Event) error { kinds = append(kinds, e.Kind); return nil }); err != nil {
			t.Fatal(err)
		}
		want := "board.claimed board.tpm_info board.ek step.started step.done step.started step.failed key.saved key.saved cert.saved cert.saved board.provisioned"
		if strings.Join(kinds, " ") != want {
			t.Errorf("events of SN1:\n got %s\nwant %s", strings.Join(kinds, " "), want)
		}
	})
}

func TestListInProgressAndExports(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 5)
		for i, st := range []string{"st1", "st2", "st1", "st1"} {
			if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: fmt.Sprint("S", i), EKPubSHA256: ekHash(i), Batch: "B1", Station: st, Slot: 4 - i}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.MarkFailed(ctx, "S3", "x", "y"); err != nil {
			t.Fatal(err)
		}
		bs, err := s.ListInProgress(ctx, "st1")
		if err != nil || len(bs) != 2 || bs[0].Serial != "S2" || bs[1].Serial != "S0" {
			t.Errorf("ListInProgress(st1) = %v, %v", bs, err)
		}
		x, err := s.RecordEKListExport(ctx, EKListExport{Batch: "B1", Format: "csv", FileSHA256: sha([]byte("file")), Boards: 3, Station: "st1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordEKListExport(ctx, EKListExport{Batch: "B404", Format: "csv", FileSHA256: sha(nil), Station: "st1"}); !errors.Is(err, ErrBatchNotFound) {
			t.Errorf("export of unknown batch = %v", err)
		}
		p, err := s.MarkEKListPushed(ctx, x.ID)
		if err != nil || p.PushedAt.IsZero() {
			t.Errorf("MarkEKListPushed = %+v, %v", p, err)
		}
		if _, err := s.MarkEKListPushed(ctx, 999); !errors.Is(err, ErrExportNotFound) {
			t.Errorf("MarkEKListPushed unknown = %v", err)
		}
		list, err := s.ListEKListExports(ctx, "B1")
		if err != nil || len(list) != 1 || list[0].FileSHA256 != sha([]byte("file")) || list[0].PushedAt.IsZero() || list[0].Boards != 3 {
			t.Errorf("ListEKListExports = %+v, %v", list, err)
		}
	})
}

// TestClaimRace has two stations (two Stores, two connection pools) claim at the same instant, 20 rounds
// of each conflict: exactly one wins, the loser gets the precise error.
func TestClaimRace(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s1 *Store, dbURL string) {
		ctx := context.Background()
		s2 := openStore(t, dbURL)
		mustOpenBatch(t, s1, "B1", "st1", 100)
		type scenario struct {
			name    string
			a, b    func(round int) ClaimRequest
			loseErr error
		}
		req := func(serial string, ek int, station string) ClaimRequest {
			return ClaimRequest{Serial: serial, EKPubSHA256: ekHash(ek), Batch: "B1", Station: station}
		}
		scenarios := []scenario{
			{"same board", func(r int) ClaimRequest { return req(fmt.Sprint("same-", r), 1000+r, "st1") },
				func(r int) ClaimRequest { return req(fmt.Sprint("same-", r), 1000+r, "st2") }, ErrBoardInProgressElsewhere},
			{"clone", func(r int) ClaimRequest { return req(fmt.Sprint("clone-a-", r), 2000+r, "st1") },
				func(r int) ClaimRequest { return req(fmt.Sprint("clone-b-", r), 2000+r, "st2") }, ErrEKBoundToOtherSerial},
			{"swap", func(r int) ClaimRequest { return req(fmt.Sprint("swap-", r), 3000+r, "st1") },
				func(r int) ClaimRequest { return req(fmt.Sprint("swap-", r), 4000+r, "st2") }, ErrSerialBoundToOtherEK},
		}
		for _, sc := range scenarios {
			for round := range 20 {
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, 2)
				for i, st := range []*Store{s1, s2} {
					r := sc.a(round)
					if i == 1 {
						r = sc.b(round)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						_, errs[i] = st.ClaimBoard(ctx, r)
					}()
				}
				close(start)
				wg.Wait()
				wins := 0
				for _, err := range errs {
					switch {
					case err == nil:
						wins++
					case !errors.Is(err, sc.loseErr):
						t.Errorf("%s round %d: loser got %v, want %v", sc.name, round, err, sc.loseErr)
					}
				}
				if wins != 1 {
					t.Fatalf("%s round %d: %d winners (%v), want exactly 1", sc.name, round, wins, errs)
				}
			}
		}
		// Same race between two goroutines of one store (two slots of one station).
		for round := range 20 {
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for slot := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[slot] = s1.ClaimBoard(ctx, ClaimRequest{Serial: fmt.Sprint("slots-", round), EKPubSHA256: ekHash(5000 + round),
						Batch: "B1", Station: "st1", Slot: slot})
				}()
			}
			wg.Wait()
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Fatalf("slot race round %d: errors %v, want exactly one winner", round, errs)
			}
		}
		if _, err := s1.VerifyChain(ctx, ""); err != nil {
			t.Errorf("chain after races: %v", err)
		}
		t.Logf("%s: transactions re-run after a lost race: %d + %d", e.name, s1.retries.Load(), s2.retries.Load())
	})
}

// TestUniqueViolationMapping checks the one place driver errors become sentinels, with a raw duplicate
// insert on each engine.
func TestUniqueViolationMapping(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 1)
		ins := s.q(`INSERT INTO boards (serial, ek_pub_sha256, batch, state, station, created_at, updated_at)
			VALUES (?, ?, 'B1', 'in_progress', 'st1', 0, 0)`)
		if _, err := s.w.ExecContext(ctx, ins, "X", ekHash(1)); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]any{{"X", ekHash(2)}, {"Y", ekHash(1)}} {
			_, err := s.w.ExecContext(ctx, ins, args...)
			if err == nil {
				t.Fatalf("duplicate %v inserted", args)
			}
			if !errors.Is(mapDBError(err), ErrDuplicate) {
				t.Errorf("mapDBError(%v) = %v, want ErrDuplicate", err, mapDBError(err))
			}
		}
		if err := mapDBError(errors.New("other")); errors.Is(err, ErrDuplicate) || errors.Is(err, errRetry) {
			t.Errorf("a plain error mapped to %v", err)
		}
	})
}

func TestHashChainTamper(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		if st, err := s.VerifyChain(ctx, ""); err != nil || st.Count != 0 || st.Head != GenesisHash {
			t.Fatalf("empty chain = %+v, %v", st, err)
		}
		mustOpenBatch(t, s, "B1", "st1", 1) // seq 1
		mustOpenBatch(t, s, "B2", "st1", 1) // seq 2
		for i := range 8 {                  // seq 3..10 alternate batches
			ev, err := s.AppendEvent(ctx, Event{Station: "st1", Batch: []string{"B1", "B2"}[i%2], Serial: "S",
				Kind: "test.note", Payload: json.RawMessage(fmt.Sprintf(` { "n" : %d } `, i))})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Seq != int64(3+i) || string(ev.Payload) != fmt.Sprintf(`{"n":%d}`, i) || ev.Hash != EventHash(ev) {
				t.Errorf("appended event = %+v", ev)
			}
		}
		if _, err := s.AppendEvent(ctx, Event{Kind: "x", Payload: json.RawMessage("{not json")}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendEvent with bad JSON = %v", err)
		}
		if _, err := s.AppendEvent(ctx, Event{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendEvent without kind = %v", err)
		}
		all, err := s.VerifyChain(ctx, "")
		if err != nil || all.Count != 10 || all.LastSeq != 10 || all.Head != all.ChainHead {
			t.Fatalf("VerifyChain = %+v, %v", all, err)
		}
		b1, err := s.VerifyChain(ctx, "B1")
		if err != nil || b1.Count != 5 || b1.LastSeq != 9 || b1.ChainSeq != 10 {
			t.Errorf("VerifyChain(B1) = %+v, %v", b1, err)
		}

		expect := func(what string, seq int64, problem string) {
			t.Helper()
			_, err := s.VerifyChain(ctx, "")
			var ce *ChainError
			if !errors.As(err, &ce) || !errors.Is(err, ErrChainBroken) || ce.Seq != seq || ce.Problem != problem {
				t.Errorf("%s: VerifyChain = %v, want %s at seq %d", what, err, problem, seq)
			}
		}
		exec := func(query string, args ...any) {
			t.Helper()
			if _, err := s.w.ExecContext(ctx, s.q(query), args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		}
		var saved eventRow
		if err := s.w.GetContext(ctx, &saved, s.q("SELECT * FROM events WHERE seq = ?"), 6); err != nil {
			t.Fatal(err)
		}
		restore := func() {
			exec("DELETE FROM events WHERE seq = ?", 6)
			exec(`INSERT INTO events (seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, saved.Seq, saved.OccurredAt, saved.Station, saved.Batch, saved.Serial,
				saved.Kind, saved.Payload, saved.PrevHash, saved.Hash)
			if _, err := s.VerifyChain(ctx, ""); err != nil {
				t.Fatalf("chain after restore: %v", err)
			}
		}

		exec("UPDATE events SET payload = ? WHERE seq = ?", `{"n":999}`, 6)
		expect("edited payload", 6, ProblemEdited)
		restore()
		exec("UPDATE events SET occurred_at = occurred_at + 1 WHERE seq = ?", 6)
		expect("edited time", 6, ProblemEdited)
		restore()
		exec("DELETE FROM events WHERE seq = ?", 6)
		expect("deleted event", 6, ProblemMissing)
		restore()
		exec("UPDATE events SET prev_hash = ? WHERE seq = ?", strings.Repeat("ab", 32), 6)
		expect("changed prev_hash", 6, ProblemWrongPrev)
		restore()
		// An edit that also recomputes its own hash breaks the next link.
		ev := saved.event()
		ev.Payload = json.RawMessage(`{"n":1000}`)
		exec("UPDATE events SET payload = ?, hash = ? WHERE seq = ?", string(ev.Payload), EventHash(ev), 6)
		expect("edited and rehashed", 7, ProblemWrongPrev)
		restore()
		exec("DELETE FROM events WHERE seq = ?", 10)
		expect("removed tail", 10, ProblemMissing)
	})
}

func TestConcurrentAppend(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s1 *Store, dbURL string) {
		ctx := context.Background()
		s2 := openStore(t, dbURL)
		const perWriter = 40
		var wg sync.WaitGroup
		errs := make(chan error, 4*perWriter)
		for w, st := range []*Store{s1, s1, s2, s2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if _, err := st.AppendEvent(ctx, Event{Station: fmt.Sprint("st", w), Kind: "test.append",
						Payload: json.RawMessage(fmt.Sprintf(`{"writer":%d,"i":%d}`, w, i))}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("AppendEvent: %v", err)
		}
		st, err := s2.VerifyChain(ctx, "")
		if err != nil || st.Count != 4*perWriter || st.LastSeq != 4*perWriter {
			t.Errorf("VerifyChain after concurrent appends = %+v, %v", st, err)
		}
	})
}

func TestListBoardsStreaming(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "BIG", "st1", 10000)
		mustOpenBatch(t, s, "OTHER", "st1", 1)
		const n = 10000
		start := clock.Now()
		seedBoards(t, s, "BIG", "st1", n)
		t.Logf("%s: seeded %d boards in %v", e.name, n, clock.Since(start))
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "OTHER-1", EKPubSHA256: ekHash(n + 1), Batch: "OTHER", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		start = clock.Now()
		count, prevID := 0, int64(0)
		err := s.ListBoards(ctx, "BIG", func(b *Board) error {
			if b.ID <= prevID || b.Batch != "BIG" || b.Serial != fmt.Sprintf("SN%07d", count) || b.EKPubSHA256 != ekHash(count) {
				return fmt.Errorf("row %d out of order or wrong: %+v", count, b)
			}
			// The callback may use the store while rows stream (SQLite has a separate reader pool).
			if count%2500 == 0 {
				if got, err := s.GetBoardByEKHash(ctx, b.EKPubSHA256); err != nil || got.Serial != b.Serial {
					return fmt.Errorf("lookup inside ListBoards: %+v, %v", got, err)
				}
			}
			prevID = b.ID
			count++
			return nil
		})
		if err != nil || count != n {
			t.Fatalf("ListBoards = %d rows, %v; want %d", count, err, n)
		}
		t.Logf("%s: streamed %d boards in %v", e.name, n, clock.Since(start))
		stop := errors.New("stop")
		count = 0
		if err := s.ListBoards(ctx, "BIG", func(*Board) error {
			count++
			if count == 10 {
				return stop
			}
			return nil
		}); !errors.Is(err, stop) || count != 10 {
			t.Errorf("early stop = %v after %d rows", err, count)
		}
		total := 0
		if err := s.ListBoards(ctx, "", func(*Board) error { total++; return nil }); err != nil || total != n+1 {
			t.Errorf("ListBoards(all) = %d, %v", total, err)
		}
		sum, err := s.ListBatches(ctx, "")
		if err != nil || sum[0].Passed != n || sum[0].Done != n {
			t.Errorf("ListBatches over seeded boards = %+v, %v", sum, err)
		}
	})
}

func TestSQLiteSettings(t *testing.T) {
	s := openStore(t, engines[0].fresh(t))
	ctx := context.Background()
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "10000"} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	var fk string
	if err := s.r.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != "1" {
		t.Errorf("reader foreign_keys = %s, %v", fk, err)
	}
	if _, err := s.r.ExecContext(ctx, "INSERT INTO operators (id, created_at) VALUES ('x', 0)"); err == nil {
		t.Error("the reader pool accepted a write")
	}
	// Foreign keys hold: a board in a batch that does not exist is refused by the database itself.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO boards (serial, batch, state, station, created_at, updated_at)
		VALUES ('S', 'nope', 'in_progress', 'nope', 0, 0)`); err == nil {
		t.Error("a board without a batch was inserted: foreign keys are off")
	}
}

// TestClock checks that rows and events take their time from the injected clock, stored as UTC, and that a
// step finished without a measured duration gets the clock time between its two journal entries.
func TestClock(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, _ *Store, dbURL string) {
		ctx := context.Background()
		var mu sync.Mutex
		now := time.Date(2026, 3, 1, 8, 0, 0, 123456789, time.FixedZone("CET", 3600))
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(time.Second)
			return now
		}
		s := openStore(t, dbURL, WithClock(clock))
		b := mustOpenBatch(t, s, "B1", "st1", 1)
		if want := time.Date(2026, 3, 1, 7, 0, 1, 123456789, time.UTC); !b.OpenedAt.Equal(want) || b.OpenedAt.Location() != time.UTC {
			t.Errorf("OpenedAt = %v, want %v in UTC", b.OpenedAt, want)
		}
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "S", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StepStarted(ctx, "S", "read_ek"); err != nil {
			t.Fatal(err)
		}
		if err := s.StepFailed(ctx, "S", "read_ek", StepOutcome{TPMTime: 5 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		steps, err := s.ListSteps(ctx, "S")
		if err != nil || len(steps) != 1 || steps[0].Duration != time.Second || steps[0].TPMTime != 5*time.Millisecond {
			t.Errorf("steps = %+v, %v; want a 1s duration from the clock", steps, err)
		}
		var last *Event
		s.ListEvents(ctx, EventFilter{}, func(e *Event) error { last = e; return nil })
		if last == nil || !last.Time.Equal(steps[0].FinishedAt) || last.Time.Location() != time.UTC {
			t.Errorf("last event time = %v, step finished %v", last, steps[0].FinishedAt)
		}
	})
}
