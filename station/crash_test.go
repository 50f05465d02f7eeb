package station_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// crashJob is what the parent hands the child process that gets killed.
type crashJob struct {
	DB, CAURL, CertPEM, KeyPEM, RootPEM string
	Job                                 station.Job
	Fault                               string // step:phase
}

// TestCrashChild is the process that dies: it runs one board and SIGKILLs itself at the named step
// boundary, as a power cut would. It only runs when TestCrashAtEveryStep starts it.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv("TPMLINE_CRASH_CHILD")
	if spec == "" {
		t.Skip("run by TestCrashAtEveryStep only")
	}
	var cj crashJob
	if err := json.Unmarshal([]byte(spec), &cj); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cj.RootPEM))
	cert, err := tls.X509KeyPair([]byte(cj.CertPEM), []byte(cj.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Open(context.Background(), cj.DB)
	if err != nil {
		t.Fatal(err)
	}
	st, err := station.New(station.Config{
		StationID: "station-test", Inventory: inv,
		CA:   provisioning.NewClient(cj.CAURL, &tls.Config{Time: clock.Now, RootCAs: pool, Certificates: []tls.Certificate{cert}}),
		Open: func(addr string) (transport.TPMCloser, error) { return fixtures.Open(addr) },
		Fault: func(step, phase string) {
			if step+":"+phase == cj.Fault {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Provision(context.Background(), cj.Job)
}

// TestCrashAtEveryStep kills the provisioning process at every step boundary and inside every step with
// two side effects, restarts, and checks that the board ends provisioned, that the TPM and the inventory
// agree (a further run finds the board already provisioned with the recorded certificates in NV), and
// that the CA has issued no certificate the inventory does not know.
func TestCrashAtEveryStep(t *testing.T) {
	if os.Getenv("TPMLINE_CRASH_CHILD") != "" {
		t.Skip("child")
	}
	ctx := context.Background()
	vendor := fixturestest.NewSwtpmVendor(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "inv.db")
	st, inv := newStation(t, dbURL, c)
	openBatch(t, inv, "B1")
	certPEM, keyPEM := clientPEM(t, c)
	rootPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}))

	var faults []string
	for _, s := range station.Steps {
		if s == provisioning.StepClear || s == station.StepConnect {
			continue // clear runs only on rework; a crash before connecting touches nothing
		}
		faults = append(faults, s+":before", s+":after")
	}
	faults = append(faults, provisioning.StepIssue+":mid", provisioning.StepPersist+":mid", provisioning.StepNVWrite+":mid")
	for i, fault := range faults {
		if testing.Short() && i%4 != 0 {
			continue
		}
		t.Run(fault, func(t *testing.T) {
			board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
			job := station.Job{Batch: "B1", Serial: fmt.Sprintf("CRASH-%02d", i), TPM: board.Addr()}
			spec, _ := json.Marshal(crashJob{DB: dbURL, CAURL: c.URL, CertPEM: certPEM, KeyPEM: keyPEM, RootPEM: rootPEM, Job: job, Fault: fault})
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "TPMLINE_CRASH_CHILD="+string(spec))
			out, err := cmd.CombinedOutput()
			killed := false
			if ee, ok := err.(*exec.ExitError); ok {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
					killed = true
				}
			}
			if !killed && fault != station.StepRecord+":after" {
				t.Fatalf("child was not killed at %s: %v\n%s", fault, err, out)
			}

			// Restart: the station reconciles what it left in progress, on the same board in the same slot.
			outs, err := st.Reconcile(ctx, map[int]string{job.Slot: job.TPM})
			if err != nil {
				t.Fatal(err)
			}
			_, recorded := inv.GetBoardBySerial(ctx, job.Serial)
			switch {
			case recorded != nil:
				// Killed before the inventory check: nothing was recorded, nothing to reconcile; the
				// operator scans the board again.
				if len(outs) != 0 {
					t.Fatalf("reconcile resumed %d boards that were never recorded", len(outs))
				}
				mustPass(t, st.Provision(ctx, job))
			case killed:
				if len(outs) != 1 {
					t.Fatalf("reconcile resumed %d boards, want 1", len(outs))
				}
				mustPass(t, outs[0])
			}
			b, err := inv.GetBoardBySerial(ctx, job.Serial)
			if err != nil || b.State != records.StateProvisioned {
				t.Fatalf("board after restart: %+v %v", b, err)
			}
			again := st.Provision(ctx, job)
			if again.Failure != nil || !again.Already {
				t.Fatalf("TPM and inventory disagree after restart: %+v %v", again, again.Failure)
			}
			known := map[string]bool{}
			certs, _ := inv.ListCertificates(ctx, job.Serial)
			for _, ct := range certs {
				known[ct.SerialHex] = true
			}
			issued, err := c.Store.CertificatesByBoard(ctx, job.Serial)
			if err != nil {
				t.Fatal(err)
			}
			for _, ic := range issued {
				if !known[ic.SerialNumber] {
					t.Fatalf("CA issued %s certificate %s that the inventory does not know", ic.Kind, ic.SerialNumber)
				}
			}
		})
	}
}

func clientPEM(t *testing.T, c *testCA) (certPEM, keyPEM string) {
	t.Helper()
	cert := c.ClientTLS.Certificates[0]
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestReconcileWithoutTheBoard: a board left in progress whose slot has no TPM any more ends failed with
// the step it stopped in, and resumes when it is scanned again.
func TestReconcileWithoutTheBoard(t *testing.T) {
	if os.Getenv("TPMLINE_CRASH_CHILD") != "" {
		t.Skip("child")
	}
	ctx := context.Background()
	board, vendor := fixturestest.NewSwtpmBoard(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "inv.db")
	st, inv := newStation(t, dbURL, c)
	openBatch(t, inv, "B1")
	certPEM, keyPEM := clientPEM(t, c)
	job := station.Job{Batch: "B1", Serial: "GONE-1", Slot: 3, TPM: board.Addr()}
	spec, _ := json.Marshal(crashJob{DB: dbURL, CAURL: c.URL, CertPEM: certPEM, KeyPEM: keyPEM,
		RootPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})), Job: job, Fault: provisioning.StepPersist + ":mid"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TPMLINE_CRASH_CHILD="+string(spec))
	_ = cmd.Run()
	outs, err := st.Reconcile(ctx, map[int]string{1: "swtpm://127.0.0.1:1"})
	if err != nil || len(outs) != 0 {
		t.Fatalf("reconcile: %v %v", outs, err)
	}
	b, err := inv.GetBoardBySerial(ctx, "GONE-1")
	if err != nil || b.State != records.StateFailed || b.ReasonCode != station.ReasonInterrupted || b.CurrentStep != provisioning.StepPersist {
		t.Fatalf("board left in progress: %+v %v", b, err)
	}
	mustPass(t, st.Provision(ctx, job))
}
