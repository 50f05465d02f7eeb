package qa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// certFor makes a certificate for key, self-signed when parent is nil.
func certFor(t *testing.T, cn string, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer, isCA bool) *x509.Certificate {
	t.Helper()
	now := clock.Now()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true, IsCA: isCA, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// qaInventory is a SQLite inventory holding batch B1: SN-1 provisioned with an EK certificate and both
// device certificates, SN-2 failed before it had any.
func qaInventory(t *testing.T) (*inventory.Store, *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	inv, err := inventory.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "B1", Product: "default", WorkOrder: "WO-1", Quantity: 2,
		Operator: "op1", Station: "st1"}); err != nil {
		t.Fatal(err)
	}
	ekKey := newKey(t)
	ekCert := certFor(t, "test EK", ekKey, nil, nil, false)
	raw, err := ekKey.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := tpm2.ECCEKTemplate
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}})
	ekPub := tpm2.Marshal(tmpl)
	if _, err := inv.ClaimBoard(ctx, records.ClaimRequest{Serial: "SN-1", EKPubSHA256: ekIdentity(t, ekPub), Batch: "B1",
		Station: "st1", Slot: 1}); err != nil {
		t.Fatal(err)
	}
	ops := []records.Op{records.OpTPMInfo(records.TPMInfo{Manufacturer: "IBM", Vendor: "SW TPM", Firmware: "1.2"}),
		records.OpEK(ekCert.Raw, ekPub)}
	for _, kind := range []records.KeyKind{records.KindIAK, records.KindIDevID} {
		ops = append(ops, records.OpKey(records.Key{Kind: kind, Public: []byte("public " + string(kind)), Handle: 0x81020001,
			Name: []byte("name " + string(kind))}), records.OpCertificate(kind, certFor(t, string(kind), newKey(t), nil, nil, false).Raw))
	}
	if err := inv.Journal(ctx, "SN-1", append(ops, records.OpProvisioned())...); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.ClaimBoard(ctx, records.ClaimRequest{Serial: "SN-2", EKPubSHA256: strings.Repeat("5e", 32), // SN-2 fails before its EK is read back
		Batch: "B1", Station: "st1", Slot: 2}); err != nil {
		t.Fatal(err)
	}
	if err := inv.MarkFailed(ctx, "SN-2", "tpm_error", "the TPM stopped answering"); err != nil {
		t.Fatal(err)
	}
	return inv, ekCert
}

func TestBatchReport(t *testing.T) {
	ctx := context.Background()
	inv, ekCert := qaInventory(t)
	info, rows, audit, err := BatchReport(ctx, inv, "B1")
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "B1" || info.WorkOrder != "WO-1" || len(info.Stations) != 1 || info.Stations[0] != "st1" {
		t.Errorf("batch info %+v", info)
	}
	if !audit.ChainVerified || audit.EventCount == 0 || len(audit.ChainHead) != 64 {
		t.Errorf("audit %+v", audit)
	}
	got := map[string]reports.BoardRow{}
	if err := rows(func(r reports.BoardRow) error { got[r.Serial] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(ekCert.RawSubjectPublicKeyInfo)
	certs, err := inv.ListCertificates(ctx, "SN-1")
	if err != nil {
		t.Fatal(err)
	}
	serials := map[records.KeyKind]string{}
	for _, c := range certs {
		serials[c.Kind] = c.SerialHex
	}
	p := got["SN-1"]
	if p.Result != reports.ResultProvisioned || p.EKPublicSHA256 != hex.EncodeToString(spki[:]) || p.TPMVendor != "IBM" ||
		p.IAKCertSerial == "" || p.IAKCertSerial != serials[records.KindIAK] || p.IDevIDCertSerial != serials[records.KindIDevID] {
		t.Errorf("provisioned row %+v", p)
	}
	f := got["SN-2"]
	if f.Result != reports.ResultFailed || f.ReasonCode != "tpm_error" || f.EKPublicSHA256 != "" || f.IAKCertSerial != "" {
		t.Errorf("failed row %+v", f)
	}
	if _, _, _, err := BatchReport(ctx, inv, "NO-SUCH"); !errors.Is(err, records.ErrBatchNotFound) {
		t.Errorf("unknown batch: %v", err)
	}
}

func TestReportsCompareWithInventory(t *testing.T) {
	ctx := context.Background()
	inv, _ := qaInventory(t)
	rootKey, leafKey := newKey(t), newKey(t)
	root := certFor(t, "test station root", rootKey, nil, nil, true)
	sg := signed.Signer{Key: leafKey, Chain: []*x509.Certificate{certFor(t, "st1", leafKey, root, rootKey, false)}}
	base := filepath.Join(t.TempDir(), "B1")
	// The batch opened a while ago (its open time is in the past of the report's).
	time.Sleep(1100 * time.Millisecond)
	made := clock.Now()
	if _, err := WriteBatchReports(ctx, inv, "B1", sg, base+".pdf", "", base+".json"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base + ".csv"); !os.IsNotExist(err) {
		t.Errorf("a CSV was written though none was asked for: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	for _, p := range []string{base + ".pdf", base + ".json"} {
		content, _ := os.ReadFile(p)
		sig, _ := os.ReadFile(p + ".sig")
		if _, err := signed.Verify(content, sig, pool); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	content, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	compare := func() bool {
		t.Helper()
		rep, err := reports.ReadReportJSON(bytesReader(content), 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := CompareReportJSON(ctx, inv, rep, content)
		if err != nil {
			t.Fatal(err)
		}
		return m.Match
	}
	if !compare() {
		t.Fatal("a fresh report does not match the inventory")
	}
	// A later event of the batch moves the chain head the report carries.
	if _, err := inv.AppendEvent(ctx, records.Event{Station: "st1", Batch: "B1", Kind: "qa.note"}); err != nil {
		t.Fatal(err)
	}
	if compare() {
		t.Fatal("the report still matches after the batch's audit trail grew")
	}
	// ...but its position is still in the trail: the batch went on, nothing was changed (issue 17 point 2).
	rep, err := reports.ReadReportJSON(bytesReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Audit.ChainSeq == 0 || rep.Audit.EventCount == 0 {
		t.Fatalf("the report does not record its chain position: %+v", rep.Audit)
	}
	events := func(ctx context.Context, batch string, fn func(*records.Event) error) error {
		return inv.ListEvents(ctx, inventory.EventFilter{Batch: batch}, fn)
	}
	pos, err := ReportPosition(ctx, events, rep)
	if err != nil || !pos.Prefix || pos.Since != 1 {
		t.Fatalf("position after one more event: %+v, %v", pos, err)
	}
	// A recomputed chain (an event of the covered prefix edited and every hash after it redone) no longer
	// holds the report's head at its position.
	recomputed := func(ctx context.Context, batch string, fn func(*records.Event) error) error {
		n := 0
		return inv.ListEvents(ctx, inventory.EventFilter{Batch: batch}, func(e *records.Event) error {
			n++
			if n >= 2 {
				sum := sha256.Sum256([]byte(e.Hash + "edited"))
				e.Hash = hex.EncodeToString(sum[:])
			}
			return fn(e)
		})
	}
	if pos, err := ReportPosition(ctx, recomputed, rep); err != nil || pos.Prefix || !strings.Contains(pos.Why, "has hash") {
		t.Fatalf("position in a recomputed trail: %+v, %v", pos, err)
	}
	// A cut trail (events removed from the end) cannot hold the position either.
	cut := func(ctx context.Context, batch string, fn func(*records.Event) error) error {
		n := int64(0)
		return inv.ListEvents(ctx, inventory.EventFilter{Batch: batch}, func(e *records.Event) error {
			if n++; n >= rep.Audit.EventCount {
				return nil
			}
			return fn(e)
		})
	}
	if pos, err := ReportPosition(ctx, cut, rep); err != nil || pos.Prefix || !strings.Contains(pos.Why, "has only") {
		t.Fatalf("position in a cut trail: %+v, %v", pos, err)
	}
	// The report says when it was made, not when the batch opened.
	if rep.GeneratedAt.Before(made.Truncate(time.Second)) || rep.GeneratedAt.After(clock.Now()) {
		t.Errorf("report generated at %v, made at %v", rep.GeneratedAt, made)
	}
}

func TestEKListExport(t *testing.T) {
	ctx := context.Background()
	inv, ekCert := qaInventory(t)
	key := newKey(t)
	sg := signed.Signer{Key: key, Chain: []*x509.Certificate{certFor(t, "st1", key, nil, nil, false)}}
	b, err := inv.GetBatch(ctx, "B1")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "B1-ek.json")
	n, err := ExportEKList(ctx, inv, b, "json", "st1", out, sg)
	if err != nil || n != 1 {
		t.Fatalf("ExportEKList = %d, %v; want 1 board", n, err)
	}
	content, _ := os.ReadFile(out)
	sig, _ := os.ReadFile(out + ".sig")
	if _, err := signed.Verify(content, sig, nil); err != nil {
		t.Fatal(err)
	}
	list, err := signed.ReadEKList(bytesReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Entries) != 1 || list.Entries[0].Serial != "SN-1" || string(list.Entries[0].EKCert) != string(ekCert.Raw) ||
		list.Header.Station != "st1" {
		t.Fatalf("EK list %+v", list)
	}
	exps, err := inv.ListEKListExports(ctx, "B1")
	sum := sha256.Sum256(content)
	if err != nil || len(exps) != 1 || exps[0].FileSHA256 != hex.EncodeToString(sum[:]) || exps[0].Boards != 1 {
		t.Fatalf("recorded exports %+v, %v", exps, err)
	}
}

func TestPushNothingToList(t *testing.T) {
	ctx := context.Background()
	inv, _ := qaInventory(t)
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "B2", Product: "default", WorkOrder: "WO-2", Quantity: 1, Operator: "op1", Station: "st1"}); err != nil {
		t.Fatal(err)
	}
	// No CA is given: a batch without provisioned boards is refused before anything is sent.
	if _, err := PushEKList(ctx, inv, nil, "B2", "st1"); !errors.Is(err, ErrNothingToList) {
		t.Fatalf("PushEKList of an empty batch: %v", err)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// ekIdentity is the inventory's EK identity of a marshalled TPMT_PUBLIC.
func ekIdentity(t *testing.T, tpmtPublic []byte) string {
	t.Helper()
	h, err := inventory.EKPubHash(tpmtPublic)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
