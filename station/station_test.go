package station_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// simOpener opens the in-process simulator; "sim:N" gives a simulator with fixed seed N, so the same
// "part" can be presented twice (clone and swap tests).
func simOpener(m *fixtures.Manufacturer) func(*station.Config) {
	return func(c *station.Config) {
		c.Open = func(addr string) (transport.TPMCloser, error) {
			opts := []fixtures.Option{fixtures.WithManufacturer(m)}
			if seed, ok := strings.CutPrefix(addr, "sim:"); ok {
				n, err := strconv.ParseInt(seed, 10, 64)
				if err != nil {
					return nil, err
				}
				opts = append(opts, fixtures.WithSimSeed(n))
				addr = "sim"
			}
			return fixtures.Open(addr, opts...)
		}
	}
}

func openBatch(t *testing.T, inv *inventory.Store, id string) {
	t.Helper()
	if _, err := inv.OpenBatch(context.Background(), records.NewBatch{ID: id, Product: "default", WorkOrder: "WO-" + id, Quantity: 10, Operator: "op1", Station: "station-test"}); err != nil {
		t.Fatal(err)
	}
}

func mustPass(t *testing.T, out *station.Outcome) {
	t.Helper()
	if out.Failure != nil || out.State != records.StateProvisioned {
		t.Fatalf("board %s: %s %v", out.Serial, out.State, out.Failure)
	}
}

func mustFail(t *testing.T, out *station.Outcome, code string, state records.BoardState) {
	t.Helper()
	if out.Failure == nil || out.Failure.Code != code || out.State != state {
		t.Fatalf("board %s: got %s %+v, want %s %s", out.Serial, out.State, out.Failure, state, code)
	}
	if strings.ContainsAny(out.Failure.Line(), "\n\r") || out.Failure.Next == "" {
		t.Fatalf("failure line %q is not one line with a next step", out.Failure.Line())
	}
}

// TestSimulatorBatch provisions boards on the in-process simulator against the CA over mutual TLS, on
// SQLite and PostgreSQL, and checks the inventory tells each board's story; then a cloned part (same EK,
// new serial) and a swapped part (known serial, new EK) are stopped with their reasons.
func TestSimulatorBatch(t *testing.T) {
	for engine, mk := range dbURLs(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			m, err := fixtures.NewManufacturer("Sim Vendor " + engine)
			if err != nil {
				t.Fatal(err)
			}
			c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
			var events []station.Event
			st, inv := newStation(t, mk(t), c, simOpener(m), func(cfg *station.Config) {
				cfg.OnEvent = func(e station.Event) { events = append(events, e) }
			})
			openBatch(t, inv, "B1")

			out := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0001", TPM: "sim:1"})
			mustPass(t, out)
			if out.IAKCertSerial == "" || out.IDevIDCertSerial == "" || out.TPMTime <= 0 || out.TPMTime > out.Duration {
				t.Fatalf("outcome %+v", out)
			}
			b, err := inv.GetBoardBySerial(ctx, "SN-0001")
			if err != nil || b.State != records.StateProvisioned || b.TPMManufacturer == "" || len(b.EKCert) == 0 {
				t.Fatalf("board %+v, %v", b, err)
			}
			certs, _ := inv.ListCertificates(ctx, "SN-0001")
			keys, _ := inv.ListKeys(ctx, "SN-0001")
			steps, _ := inv.ListSteps(ctx, "SN-0001")
			if len(certs) != 2 || len(keys) != 2 || len(steps) < len(station.Steps)-2 {
				t.Fatalf("inventory has %d certs, %d keys, %d steps", len(certs), len(keys), len(steps))
			}
			issued, err := c.Store.CertificatesByBoard(ctx, "SN-0001")
			if err != nil || len(issued) != 2 {
				t.Fatalf("CA issued %d certificates: %v", len(issued), err)
			}
			if events[0].Kind != station.EvStarted || events[len(events)-1].Kind != station.EvPassed {
				t.Fatalf("events start %s end %s", events[0].Kind, events[len(events)-1].Kind)
			}

			// A second board on another simulated part passes too.
			mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0002", TPM: "sim:2"}))

			// Cloned part: the TPM of SN-0001 shows up under a new serial.
			clone := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0003", TPM: "sim:1"})
			mustFail(t, clone, station.ReasonClone, records.StateStopped)
			if !strings.Contains(clone.Failure.Text, "SN-0001") {
				t.Fatalf("clone reason %q does not name the first serial", clone.Failure.Text)
			}
			// Swapped part: SN-0002's label on a board with another TPM.
			mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0002", TPM: "sim:3"}), station.ReasonSwap, records.StateStopped)
			// Neither refusal changed what was recorded.
			for _, sn := range []string{"SN-0001", "SN-0002"} {
				b, err := inv.GetBoardBySerial(ctx, sn)
				if err != nil || b.State != records.StateProvisioned {
					t.Fatalf("board %s after refusals: %+v %v", sn, b, err)
				}
			}
			if _, err := inv.VerifyChain(ctx, ""); err != nil {
				t.Fatal(err)
			}
			sums, err := inv.ListBatches(ctx, "")
			if err != nil || len(sums) != 1 || sums[0].Passed != 2 || sums[0].Refused != 2 {
				t.Fatalf("batch counts after a clone and a swap: %+v %v", sums, err)
			}
		})
	}
}

// TestRefusals covers the inputs refused before the board is touched or recorded.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("Refusal Vendor")
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, simOpener(m))
	openBatch(t, inv, "B1")
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN\x1b[2J", TPM: "sim"}), station.ReasonBadSerial, records.StateFailed)
	mustFail(t, st.Provision(ctx, station.Job{Batch: "NOPE", Serial: "SN-1", TPM: "sim"}), station.ReasonBatch, records.StateFailed)
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-1", TPM: "swtpm://127.0.0.1:1"}), station.ReasonTPMUnreachable, records.StateFailed)
	if _, err := inv.CloseBatch(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-1", TPM: "sim"}), station.ReasonBatch, records.StateFailed)
	if _, err := inv.GetBoardBySerial(ctx, "SN-1"); err == nil {
		t.Fatal("a refused board was recorded")
	}

	// An untrusted TPM vendor: the CA refuses the EK and the board is stopped.
	other, err := fixtures.NewManufacturer("Unknown Vendor")
	if err != nil {
		t.Fatal(err)
	}
	st2, inv2 := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv2.db"), c, simOpener(other))
	openBatch(t, inv2, "B2")
	mustFail(t, st2.Provision(ctx, station.Job{Batch: "B2", Serial: "SN-2", TPM: "sim"}), "ca_ek_untrusted", records.StateStopped)
}

// TestCADownThenBack: the CA is unreachable mid-batch; the board keeps a clear state and passes on retry.
func TestCADownThenBack(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("CA Down Vendor")
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "inv.db")
	down := *c
	down.URL = "https://127.0.0.1:1"
	st, inv := newStation(t, dbURL, &down, simOpener(m))
	openBatch(t, inv, "B1")
	out := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-CA", TPM: "sim:7"})
	mustFail(t, out, station.ReasonCAUnreachable, records.StateInProgress)
	b, err := inv.GetBoardBySerial(ctx, "SN-CA")
	if err != nil || b.State != records.StateInProgress || b.CurrentStep == "" {
		t.Fatalf("board after CA outage: %+v %v", b, err)
	}
	st2, _ := newStation(t, dbURL, c, simOpener(m))
	mustPass(t, st2.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-CA", TPM: "sim:7"}))
}

// TestSwtpmBoard provisions a swtpm board made by swtpm_setup with swtpm_localca EK certificates (the CA
// trusting the swtpm local CA as a vendor root), cross-checks the result with tpm2-tools and openssl, and
// re-runs the board (no-op pass), a rework, and a TPM that stops answering.
func TestSwtpmBoard(t *testing.T) {
	ctx := context.Background()
	board, vendor := fixturestest.NewSwtpmBoard(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c)
	openBatch(t, inv, "B1")
	out := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-0001", TPM: board.Addr()})
	mustPass(t, out)

	// tpm2-tools: the keys sit at their handles and the NV certificates match them.
	certs, err := inv.ListCertificates(ctx, "SW-0001")
	if err != nil || len(certs) != 2 {
		t.Fatal(certs, err)
	}
	tcti := board.TCTI()
	dir := t.TempDir()
	caRoot := filepath.Join(dir, "ca-root.pem")
	if err := os.WriteFile(caRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		kind   records.KeyKind
		handle string
		nv     string
	}{{records.KindIAK, "0x81020001", "0x01C90100"}, {records.KindIDevID, "0x81020000", "0x01C90200"}} {
		pubPEM := filepath.Join(dir, string(x.kind)+".pem")
		tools(t, tcti, "tpm2_readpublic", "-c", x.handle, "-f", "pem", "-o", pubPEM)
		der := filepath.Join(dir, string(x.kind)+".der")
		tools(t, tcti, "tpm2_nvread", x.nv, "-o", der)
		got, _ := os.ReadFile(der)
		var want []byte
		for _, ct := range certs {
			if ct.Kind == x.kind {
				want = ct.DER
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s certificate in NV %s differs from the inventory's", x.kind, x.nv)
		}
		cert, err := x509.ParseCertificate(got)
		if err != nil {
			t.Fatal(err)
		}
		tpmPub, _ := os.ReadFile(pubPEM)
		blk, _ := pem.Decode(tpmPub)
		spki, _ := x509.MarshalPKIXPublicKey(cert.PublicKey)
		if blk == nil || !bytes.Equal(blk.Bytes, spki) {
			t.Fatalf("%s at %s is not the key its certificate certifies", x.kind, x.handle)
		}
		certPEM := filepath.Join(dir, string(x.kind)+"-cert.pem")
		_ = os.WriteFile(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: got}), 0o644)
		inter := filepath.Join(dir, "issuing.pem")
		issuingDER := issuingCA(t, c, got)
		_ = os.WriteFile(inter, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuingDER}), 0o644)
		if outb, err := exec.Command("openssl", append(append([]string{"verify"}, clock.OpenSSLAtTime()...), "-CAfile", caRoot, "-untrusted", inter, certPEM)...).CombinedOutput(); err != nil {
			t.Fatalf("openssl verify %s: %v\n%s", x.kind, err, outb)
		}
	}

	// Running the same board again is a no-op pass.
	again := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-0001", TPM: board.Addr()})
	mustPass(t, again)
	if !again.Already {
		t.Fatal("re-run did not recognise the provisioned board")
	}
	// A rework replaces keys and certificates.
	re := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-0001", TPM: board.Addr(), Rework: true})
	mustPass(t, re)
	if re.IDevIDCertSerial == out.IDevIDCertSerial {
		t.Fatal("rework kept the old IDevID certificate")
	}
	// The TPM stops answering: a clear failure, nothing recorded lost.
	if err := board.Stop(); err != nil {
		t.Fatal(err)
	}
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-0001", TPM: board.Addr(), Rework: true}), station.ReasonTPMUnreachable, records.StateFailed)
	b, err := inv.GetBoardBySerial(ctx, "SW-0001")
	if err != nil || b.State != records.StateProvisioned {
		t.Fatalf("board after TPM loss: %+v %v", b, err)
	}
}

// issuingCA returns the DER of the CA that issued cert, from the CA's answer chain stored in its store.
func issuingCA(t *testing.T, c *testCA, certDER []byte) []byte {
	t.Helper()
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	return c.issuing(t, cert)
}

func tools(t *testing.T, tcti string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tcti)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func loadPEMs(paths ...string) ([]*x509.Certificate, []byte, error) {
	var out []*x509.Certificate
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, b...)
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, c)
		}
	}
	return out, all, nil
}

// TestAbort: an operator's abort ends the board with the reason "aborted", recorded, and a retry passes.
func TestAbort(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("Abort Vendor")
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
	actx, cancel := context.WithCancel(ctx)
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, simOpener(m), func(cfg *station.Config) {
		cfg.Fault = func(step, phase string) {
			if step == "enroll" && phase == "before" {
				cancel()
			}
		}
	})
	openBatch(t, inv, "B1")
	out := st.Provision(actx, station.Job{Batch: "B1", Serial: "AB-1", TPM: "sim:31"})
	mustFail(t, out, station.ReasonAborted, records.StateFailed)
	if b, err := inv.GetBoardBySerial(ctx, "AB-1"); err != nil || b.ReasonCode != station.ReasonAborted {
		t.Fatalf("aborted board recorded as %+v %v", b, err)
	}
	mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "AB-1", TPM: "sim:31"}))
}
