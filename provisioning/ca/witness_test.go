package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
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
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			url := ""
			if engine == "postgres" {
				url = pgURL(t)
			}
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

// TestWitnessStore: the store's own refusals, named by sentinel.
func TestWitnessStore(t *testing.T) {
	e := newEnv(t, "")
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
}
