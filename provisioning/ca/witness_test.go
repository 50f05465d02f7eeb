package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/reports/signed"
)

func hash64(c byte) string { return strings.Repeat(string(c), 64) }

// witnessReq signs cp's body with cert's key, carrying cert in the signature.
func witnessReq(t testing.TB, cert tls.Certificate, cp *provisioning.Checkpoint) *provisioning.WitnessRequest {
	t.Helper()
	body := cp.Body()
	sg := signed.Signer{Key: cert.PrivateKey.(crypto.Signer), Chain: []*x509.Certificate{cert.Leaf}}
	sig, err := sg.Sign(bytes.NewReader(body), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.WitnessRequest{Checkpoint: body, Signature: sig}
}

// TestWitness: a station's checkpoints over HTTPS with mutual TLS, on both engines: stored, answered
// newest first, the same one again accepted; then one refusal per check Witness lists.
func TestWitness(t *testing.T) {
	bothEngines(t, func(t *testing.T, _, url string) {
		h := newHTTPSCA(t, url)
		st7 := clientCert(t, h.accessKP, "station-7")
		h.client = h.clientWith(st7)
		at := clock.Now().UTC().Truncate(time.Millisecond)
		cp := func(seq int64, c byte) *provisioning.Checkpoint {
			return &provisioning.Checkpoint{Station: "station-7", Seq: seq, Hash: hash64(c), Time: at}
		}
		post := func(req any) (int, *provisioning.ErrorBody, *provisioning.WitnessResponse) {
			t.Helper()
			var res provisioning.WitnessResponse
			st, eb := h.post(t, h.client, provisioning.PathWitness, mustJSON(t, req), &res)
			return st, eb, &res
		}
		for _, req := range []*provisioning.WitnessRequest{witnessReq(t, st7, cp(5, 'a')), witnessReq(t, st7, cp(5, 'a')), witnessReq(t, st7, cp(9, 'b'))} {
			if st, eb, _ := post(req); eb != nil {
				t.Fatalf("witness: %d %+v", st, eb)
			}
		}
		_, eb, res := post(&provisioning.WitnessRequest{})
		if eb != nil || len(res.Heads) != 2 || res.Heads[0].Seq != 9 || res.Heads[0].Hash != hash64('b') || res.Heads[1].Seq != 5 ||
			!res.Heads[1].SignedAt.Equal(at) {
			t.Fatalf("heads = %+v, %+v", res, eb)
		}

		other := clientCert(t, h.accessKP, "station-8")
		sameName := clientCert(t, h.accessKP, "station-7") // another key under the same name
		tampered := witnessReq(t, st7, cp(10, 'c'))
		tampered.Checkpoint = cp(10, 'd').Body()
		nonCanonical := witnessReq(t, st7, cp(10, 'c'))
		nonCanonical.Checkpoint = append([]byte{}, nonCanonical.Checkpoint...)
		nonCanonical.Checkpoint = bytes.Replace(nonCanonical.Checkpoint, []byte("seq 10"), []byte("seq 010"), 1)
		big := &provisioning.WitnessRequest{Checkpoint: bytes.Repeat([]byte("x"), provisioning.MaxWitnessRequestBytes), Signature: []byte("x")}
		for _, c := range []struct {
			name   string
			req    any
			status int
			code   provisioning.ErrorCode
		}{
			{"checkpoint without signature", &provisioning.WitnessRequest{Checkpoint: cp(10, 'c').Body()}, 400, provisioning.CodeBadRequest},
			{"not a checkpoint", witnessReqBody(t, st7, []byte("hello\n")), 422, provisioning.CodeCheckpointInvalid},
			{"not canonical", nonCanonical, 422, provisioning.CodeCheckpointInvalid},
			{"another station's", witnessReq(t, st7, &provisioning.Checkpoint{Station: "station-8", Seq: 10, Hash: hash64('c'), Time: at}), 422, provisioning.CodeCheckpointInvalid},
			{"signature over other bytes", tampered, 422, provisioning.CodeCheckpointInvalid},
			{"signed by another certificate", witnessReq(t, sameName, cp(10, 'c')), 422, provisioning.CodeCheckpointInvalid},
			{"signed by another station", witnessReq(t, other, cp(10, 'c')), 422, provisioning.CodeCheckpointInvalid},
			{"fork at a witnessed seq", witnessReq(t, st7, cp(9, 'c')), 409, provisioning.CodeWitnessConflict},
			{"behind the last head", witnessReq(t, st7, cp(7, 'c')), 409, provisioning.CodeWitnessConflict},
			{"over the size bound", big, 413, provisioning.CodeTooLarge},
			{"unknown field", map[string]any{"checkpoint": nil, "extra": 1}, 400, provisioning.CodeBadRequest},
		} {
			st, eb, _ := post(c.req)
			if eb == nil || st != c.status || eb.Error.Code != c.code {
				t.Errorf("%s: %d %+v, want %d %s", c.name, st, eb, c.status, c.code)
			}
		}
		if _, _, res := post(&provisioning.WitnessRequest{}); len(res.Heads) != 2 {
			t.Errorf("a refused checkpoint was stored: %+v", res.Heads)
		}
	})
}

func witnessReqBody(t testing.TB, cert tls.Certificate, body []byte) *provisioning.WitnessRequest {
	t.Helper()
	sg := signed.Signer{Key: cert.PrivateKey.(crypto.Signer), Chain: []*x509.Certificate{cert.Leaf}}
	sig, err := sg.Sign(bytes.NewReader(body), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.WitnessRequest{Checkpoint: body, Signature: sig}
}

// TestWitnessStore: the store's own refusals, named by sentinel, on both engines (PostgreSQL takes an
// enrollment's head in one statement of its own, qPGEnrollmentHead), and many requests carrying the same
// head at once.
func TestWitnessStore(t *testing.T) {
	bothEngines(t, testWitnessStore)
}

func testWitnessStore(t *testing.T, _, url string) {
	e := newEnv(t, url)
	ctx := context.Background()
	add := func(seq int64, c byte) error {
		return e.store.AddWitnessedHead(ctx, &WitnessedHead{Station: "s", Seq: seq, Hash: hash64(c), SignedAt: clock.Now(), ReceivedAt: clock.Now(),
			Checkpoint: []byte("c"), Signature: []byte("s")})
	}
	if err := add(3, 'a'); err != nil {
		t.Fatal(err)
	}
	if err := add(3, 'b'); !errors.Is(err, ErrWitnessFork) {
		t.Errorf("fork = %v", err)
	}
	if err := add(2, 'a'); !errors.Is(err, ErrWitnessRollback) {
		t.Errorf("rollback = %v", err)
	}
	if err := add(3, 'a'); err != nil {
		t.Errorf("the same head again = %v", err)
	}

	// Enrollment heads: a late one (behind, signed before or within the skew after) is taken; behind and
	// signed later than that is not.
	t0 := clock.Now().UTC().Truncate(time.Millisecond)
	late := func(seq int64, c byte, at time.Duration) error {
		return e.store.AddEnrollmentHead(ctx, &WitnessedHead{Station: "e", Seq: seq, Hash: hash64(c), SignedAt: t0.Add(at), ReceivedAt: clock.Now(),
			Checkpoint: []byte("c"), Signature: []byte("s")})
	}
	if err := late(10, 'a', 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := late(8, 'b', time.Second); err != nil {
		t.Errorf("a late head = %v", err)
	}
	if err := late(7, 'b', time.Second+EnrollmentHeadSkew); err != nil {
		t.Errorf("a late head signed the whole skew after = %v", err)
	}
	if err := late(9, 'c', 2*time.Second+EnrollmentHeadSkew+time.Millisecond); !errors.Is(err, ErrWitnessRollback) {
		t.Errorf("behind and signed after = %v", err)
	}
	if err := late(8, 'd', time.Second); !errors.Is(err, ErrWitnessFork) {
		t.Errorf("enrollment fork = %v", err)
	}
	if err := late(10, 'a', 4*time.Second); err != nil {
		t.Errorf("the same head again, signed later = %v", err)
	}
	if hs, err := e.store.WitnessedHeads(ctx, "e", 10); err != nil || len(hs) != 3 || hs[0].Seq != 10 || hs[1].Seq != 8 || hs[2].Seq != 7 {
		t.Errorf("enrollment heads = %+v, %v", hs, err)
	}
	// The witness endpoint's rule stays strict: the late head is refused there.
	if err := e.store.AddWitnessedHead(ctx, &WitnessedHead{Station: "e", Seq: 9, Hash: hash64('c'), SignedAt: t0, ReceivedAt: t0,
		Checkpoint: []byte("c"), Signature: []byte("s")}); !errors.Is(err, ErrWitnessRollback) {
		t.Errorf("a late head at the witness endpoint = %v", err)
	}

	// Slots enrolling at once send the same head: every request is taken and one row is stored. Another
	// hash at that seq, sent at the same time, is a fork for whichever arrives second.
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			c := byte('a')
			if i == len(errs)-1 {
				c = 'z'
			}
			errs[i] = late(20, c, 3*time.Second)
		})
	}
	wg.Wait()
	forks := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, ErrWitnessFork):
			forks++
		case err != nil:
			t.Errorf("request %d at once: %v", i, err)
		}
	}
	hs, err := e.store.WitnessedHeads(ctx, "e", 10)
	if err != nil || len(hs) != 4 || hs[0].Seq != 20 {
		t.Fatalf("heads after the concurrent requests = %+v, %v", hs, err)
	}
	if want := 1; hs[0].Hash == hash64('z') {
		want = len(errs) - 1 // the odd one was stored first: every other request is the fork
		if forks != want {
			t.Errorf("%d forks, want %d (stored %s)", forks, want, hs[0].Hash)
		}
	} else if forks != want {
		t.Errorf("%d forks, want %d", forks, want)
	}
}

// TestEnrollmentHead: the signed chain head an enrollment carries, over HTTPS with mutual TLS on both
// engines: an enrollment without one still enrolls; heads are stored, one that arrives after a later
// one (signed before it) too; then one refusal per check, each refusing the enrollment and storing
// nothing.
func TestEnrollmentHead(t *testing.T) {
	b := newBoard(t, "SN-HEAD", provisioning.EKRSA2048, provisioning.KeyP256)
	bothEngines(t, func(t *testing.T, _, url string) {
		h := newHTTPSCA(t, url)
		st7 := clientCert(t, h.accessKP, "station-7")
		h.client = h.clientWith(st7)
		t0 := clock.Now().UTC().Truncate(time.Millisecond)
		cp := func(seq int64, c byte, after time.Duration) *provisioning.Checkpoint {
			return &provisioning.Checkpoint{Station: "station-7", Seq: seq, Hash: hash64(c), Time: t0.Add(after)}
		}
		enroll := func(head *provisioning.WitnessRequest) (int, *provisioning.ErrorBody) {
			t.Helper()
			req := b.request()
			req.AuditHead = head
			var ch provisioning.Challenge
			st, eb := h.post(t, h.client, provisioning.PathEnroll, mustJSON(t, req), &ch)
			if eb == nil && ch.SessionID == "" {
				t.Fatalf("enroll answered no challenge")
			}
			return st, eb
		}
		heads := func() []provisioning.WitnessedHead {
			t.Helper()
			var res provisioning.WitnessResponse
			if st, eb := h.post(t, h.client, provisioning.PathWitness, mustJSON(t, &provisioning.WitnessRequest{}), &res); eb != nil {
				t.Fatalf("witness list: %d %+v", st, eb)
			}
			return res.Heads
		}
		for i, head := range []*provisioning.WitnessRequest{nil, witnessReq(t, st7, cp(5, 'a', 0)), witnessReq(t, st7, cp(9, 'b', 2*time.Second)),
			witnessReq(t, st7, cp(7, 'c', time.Second)), witnessReq(t, st7, cp(9, 'b', 3*time.Second))} {
			if st, eb := enroll(head); eb != nil {
				t.Fatalf("enrollment %d: %d %+v", i, st, eb)
			}
		}
		if got := heads(); len(got) != 3 || got[0].Seq != 9 || got[1].Seq != 7 || got[1].Hash != hash64('c') || got[2].Seq != 5 {
			t.Fatalf("heads = %+v", got)
		}

		tampered := witnessReq(t, st7, cp(10, 'd', 4*time.Second))
		tampered.Checkpoint = cp(10, 'e', 4*time.Second).Body()
		big := &provisioning.WitnessRequest{Checkpoint: bytes.Repeat([]byte("x"), provisioning.MaxWitnessRequestBytes), Signature: []byte("x")}
		for _, c := range []struct {
			name   string
			head   *provisioning.WitnessRequest
			status int
			code   provisioning.ErrorCode
		}{
			{"checkpoint without signature", &provisioning.WitnessRequest{Checkpoint: cp(10, 'd', 4*time.Second).Body()}, 400, provisioning.CodeBadRequest},
			{"not a checkpoint", witnessReqBody(t, st7, []byte("hello\n")), 422, provisioning.CodeCheckpointInvalid},
			{"another station's", witnessReq(t, st7, &provisioning.Checkpoint{Station: "station-8", Seq: 10, Hash: hash64('d'), Time: t0}), 422, provisioning.CodeCheckpointInvalid},
			{"signature over other bytes", tampered, 422, provisioning.CodeCheckpointInvalid},
			{"signed by another certificate", witnessReq(t, clientCert(t, h.accessKP, "station-7"), cp(10, 'd', 4*time.Second)), 422, provisioning.CodeCheckpointInvalid},
			{"over the size bound", big, 413, provisioning.CodeTooLarge},
			{"fork at a witnessed seq", witnessReq(t, st7, cp(7, 'e', time.Second)), 409, provisioning.CodeWitnessConflict},
			{"behind a head and signed over the skew after it", witnessReq(t, st7, cp(6, 'f', 2*time.Second+EnrollmentHeadSkew+time.Second)), 409, provisioning.CodeWitnessConflict},
		} {
			st, eb := enroll(c.head)
			if eb == nil || st != c.status || eb.Error.Code != c.code {
				t.Errorf("%s: %d %+v, want %d %s", c.name, st, eb, c.status, c.code)
			}
		}
		if got := heads(); len(got) != 3 {
			t.Errorf("a refused head was stored: %+v", got)
		}
	})
	t.Run("required", func(t *testing.T) {
		h := newHTTPSCA(t, "")
		h.v.RequireAuditHead = true
		st, eb := h.post(t, h.client, provisioning.PathEnroll, mustJSON(t, b.request()), nil)
		if eb == nil || st != 422 || eb.Error.Code != provisioning.CodeCheckpointInvalid || !strings.Contains(eb.Error.Message, "SN-HEAD") {
			t.Fatalf("enrollment without a head where one is required: %d %+v", st, eb)
		}
	})
}
