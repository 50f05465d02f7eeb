package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/provisioning"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	var resp *http.Response
	var err error
	for i := 0; i < 200; i++ {
		if resp, err = http.Get("http://" + addr + "/metrics"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestMetrics scrapes serve --metrics-listen around an enrollment, a refusal and a revocation and checks
// the counters moved.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", dir); code != ExitOK {
		t.Fatalf("init: %s", errOut)
	}
	stations := filepath.Join(t.TempDir(), "st")
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", stations); code != ExitOK {
		t.Fatalf("station add: %s", errOut)
	}
	maddr := freeAddr(t)
	s := serveCA(t, dir, stations, "line-1", "--metrics-listen", maddr)
	b := newBoard(t, "SN-MET")
	if _, st, body := s.enroll(t, b); st != 200 {
		t.Fatalf("enroll: %d %s", st, body)
	}
	if st, _ := s.post(t, provisioning.PathEnroll, map[string]any{"version": 99}, nil); st != 400 {
		t.Fatalf("bad version: HTTP %d", st)
	}
	if code, _, errOut := runCLI(t, ctx, "revoke", "--dir", dir, "--board", "SN-MET"); code != ExitOK {
		t.Fatalf("revoke: %s", errOut)
	}
	m := scrape(t, maddr)
	for _, want := range []string{
		`tpmline_ca_requests_total{outcome="ok",path="/v1/enroll"} 1`,
		`tpmline_ca_requests_total{outcome="ok",path="/v1/activate"} 1`,
		`tpmline_ca_requests_total{outcome="unsupported_version",path="/v1/enroll"} 1`,
		`tpmline_ca_certificates_issued_total{kind="idevid"} 1`,
		`tpmline_ca_certificates_issued_total{kind="iak"} 1`,
		`tpmline_ca_request_duration_seconds_count{path="/v1/enroll"} 2`,
		`tpmline_ca_certificates_revoked{kind="idevid"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(m)
	}
}
