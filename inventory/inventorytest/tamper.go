// Package inventorytest builds an inventory that exercises every table the station reads and lists the
// ways a database writer can change it behind the store's back, so the inventory's own tests and the
// report's refusal tests run the same cases on both engines.
package inventorytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
)

// The fixture's boards, each in a different final state.
const (
	Batch       = "B1"
	OtherBatch  = "B2"
	EmptyBatch  = "B3"
	Provisioned = "P1" // every table has rows for it
	Failed      = "F1"
	Stopped     = "X1"
	Reworked    = "R1" // reworked onto a new EK, then provisioned
	InProgress  = "N1" // claimed only
)

// EK returns the EK public key bytes the fixture gives board i.
func EK(i int) []byte {
	// An RSA-2048 EK public area (TPMT_PUBLIC, template L-1's shape) whose modulus is derived from i: the
	// store takes the EK identity of it, so it must be a usable key.
	seed := sha256.Sum256([]byte(fmt.Sprintf("ek-public-%d", i)))
	n := make([]byte, 0, 256)
	for len(n) < 256 {
		n = append(n, seed[:]...)
	}
	n[0] |= 0x80
	b := binary.BigEndian.AppendUint16(nil, 0x0001)  // TPM_ALG_RSA
	b = binary.BigEndian.AppendUint16(b, 0x000B)     // TPM_ALG_SHA256
	b = binary.BigEndian.AppendUint32(b, 0x000300B2) // objectAttributes of template L-1
	b = binary.BigEndian.AppendUint16(b, 0)          // authPolicy (empty)
	b = binary.BigEndian.AppendUint16(b, 0x0010)     // symmetric: TPM_ALG_NULL
	b = binary.BigEndian.AppendUint16(b, 0x0010)     // scheme: TPM_ALG_NULL
	b = binary.BigEndian.AppendUint16(b, 2048)
	b = binary.BigEndian.AppendUint32(b, 0) // exponent: the default 65537
	b = binary.BigEndian.AppendUint16(b, 256)
	return append(b, n...)
}

// EKID is the inventory's EK identity of EK(i).
func EKID(i int) string {
	h, err := inventory.EKPubHash(EK(i))
	if err != nil {
		panic(err)
	}
	return h
}

// Build fills s with batches B1 (open), B2 (closed) and B3 (empty), boards in every state, their steps,
// keys and certificates, and an EK list export that was pushed.
func Build(t testing.TB, s *inventory.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.OpenBatch(ctx, records.NewBatch{ID: Batch, Product: "gw-100", WorkOrder: "WO-1", Quantity: 5, Operator: "alice", Station: "st1"})
	must(err)
	_, err = s.OpenBatch(ctx, records.NewBatch{ID: OtherBatch, Product: "gw-200", WorkOrder: "WO-2", Quantity: 1, Operator: "bob", Station: "st2"})
	must(err)
	_, err = s.OpenBatch(ctx, records.NewBatch{ID: EmptyBatch, Product: "gw-100", WorkOrder: "WO-3", Quantity: 0, Operator: "alice", Station: "st1"})
	must(err)
	claim := func(serial string, ek, slot int, rework bool) {
		t.Helper()
		_, err := s.ClaimBoard(ctx, records.ClaimRequest{Serial: serial, EKPubSHA256: EKID(ek), Batch: Batch,
			Station: "st1", Slot: slot, Rework: rework})
		must(err)
	}
	full := func(serial string, ek int, certSerial int64) {
		t.Helper()
		must(s.Journal(ctx, serial, records.OpStepRan("read-ek", records.StepOutcome{Duration: time.Millisecond, TPMTime: time.Microsecond, Detail: "rsa2048"}, false),
			records.OpTPMInfo(records.TPMInfo{Manufacturer: "IBM", Vendor: "SW TPM", Firmware: "1.59"}),
			records.OpEK([]byte("ek-cert-"+serial), EK(ek))))
		id, err := s.StepStarted(ctx, serial, "create-keys")
		must(err)
		_ = id
		for _, k := range []records.KeyKind{records.KindIAK, records.KindIDevID} {
			must(s.SaveKey(ctx, serial, records.Key{Kind: k, Public: []byte("pub-" + string(k) + serial), Handle: 0x81020000, Name: []byte("name-" + serial)}))
		}
		must(s.StepFinished(ctx, serial, "create-keys", records.StepOutcome{TPMTime: 2 * time.Millisecond, Detail: "ok"}))
		for i, k := range []records.KeyKind{records.KindIAK, records.KindIDevID} {
			_, err := s.SaveCertificate(ctx, serial, k, cert(t, certSerial+int64(i)))
			must(err)
		}
		_, err = s.MarkProvisioned(ctx, serial)
		must(err)
	}
	claim(Provisioned, 1, 0, false)
	full(Provisioned, 1, 100)
	claim(Failed, 2, 1, false)
	must(s.Journal(ctx, Failed, records.OpStepRan("read-ek", records.StepOutcome{Duration: time.Millisecond}, true),
		records.OpFailed("no_ek", "the TPM holds no EK certificate")))
	claim(Stopped, 3, 2, false)
	must(s.MarkStopped(ctx, Stopped, "qa_hold", "held by QA"))
	claim(Reworked, 4, 3, false)
	full(Reworked, 4, 200)
	claim(Reworked, 5, 3, true)
	full(Reworked, 5, 300)
	claim(InProgress, 6, 4, false)
	_, err = s.ClaimBoard(ctx, records.ClaimRequest{Serial: "DUP", EKPubSHA256: EKID(1), Batch: Batch, Station: "st1", Slot: 5})
	if err == nil {
		t.Fatal("a claim with P1's EK under another serial was accepted")
	}
	exp, err := s.RecordEKListExport(ctx, records.EKListExport{Batch: Batch, Format: "csv",
		FileSHA256: "ab" + fmt.Sprintf("%062d", 0), Boards: 2, Station: "st1"})
	must(err)
	_, err = s.MarkEKListPushed(ctx, exp.ID)
	must(err)
	_, err = s.CloseBatch(ctx, OtherBatch)
	must(err)
}

func cert(t testing.TB, serial int64) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "board"},
		NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Tamper is one change made with raw SQL behind the store's back, and the divergence it must cause.
type Tamper struct {
	Name  string
	SQL   string // ? placeholders, rebound per engine
	Args  []any
	Table string
	Key   string // "" when the key is an id the case does not know ahead (a step)
	Field string
	// Batch is the batch whose report must refuse.
	Batch string
}

const p1 = "(SELECT id FROM boards WHERE serial = 'P1')"

// Cases is every field of every table a report, `board show` or an EK list reads, edited; and a row of
// each table deleted and inserted.
func Cases() []Tamper {
	b := func(field, set string, args ...any) Tamper {
		return Tamper{Name: "boards." + field, SQL: "UPDATE boards SET " + set + " WHERE serial = 'P1'", Args: args,
			Table: "boards", Key: Provisioned, Field: field, Batch: Batch}
	}
	ba := func(field, set string) Tamper {
		return Tamper{Name: "batches." + field, SQL: "UPDATE batches SET " + set + " WHERE id = 'B1'",
			Table: "batches", Key: Batch, Field: field, Batch: Batch}
	}
	k := func(field, set string, args ...any) Tamper {
		return Tamper{Name: "keys." + field, SQL: "UPDATE keys SET " + set + " WHERE kind = 'iak' AND attempt = 1 AND board_id = " + p1,
			Args: args, Table: "keys", Key: "P1/1/iak", Field: field, Batch: Batch}
	}
	c := func(field, set string, args ...any) Tamper {
		return Tamper{Name: "certificates." + field, SQL: "UPDATE certificates SET " + set + " WHERE kind = 'idevid' AND attempt = 1 AND board_id = " + p1,
			Args: args, Table: "certificates", Key: "P1/1/idevid", Field: field, Batch: Batch}
	}
	st := func(field, set string) Tamper {
		return Tamper{Name: "steps." + field, SQL: "UPDATE steps SET " + set + " WHERE id = (SELECT MAX(id) FROM steps WHERE board_id = " + p1 + ")",
			Table: "steps", Field: field, Batch: Batch}
	}
	x := func(field, set string) Tamper {
		return Tamper{Name: "ek_list_exports." + field, SQL: "UPDATE ek_list_exports SET " + set, Table: "ek_list_exports",
			Key: "1", Field: field, Batch: Batch}
	}
	row := func(name, table, key, sql string, args ...any) Tamper {
		batch := Batch
		if table == "batches" {
			batch = key // a batch row belongs to itself
		}
		return Tamper{Name: name, SQL: sql, Args: args, Table: table, Key: key, Field: "row", Batch: batch}
	}
	return []Tamper{
		b("ek_pub_sha256", "ek_pub_sha256 = ?", EKID(99)),
		b("batch", "batch = 'B3'"),
		b("state", "state = 'failed'"),
		b("current_step", "current_step = 'other'"),
		b("reason_code", "reason_code = 'x'"),
		b("reason_text", "reason_text = 'x'"),
		b("tpm_manufacturer", "tpm_manufacturer = 'ACME'"),
		b("tpm_vendor", "tpm_vendor = 'ACME'"),
		b("tpm_firmware", "tpm_firmware = '9.9'"),
		b("ek_cert", "ek_cert = ?", []byte("forged cert")),
		b("ek_public", "ek_public = ?", []byte("forged public")),
		b("station", "station = 'st2'"),
		b("slot", "slot = 7"),
		b("attempt", "attempt = 5"),
		b("rework_count", "rework_count = 3"),
		b("created_at", "created_at = created_at - 1000"),
		b("updated_at", "updated_at = updated_at + 1000"),
		ba("product", "product = 'gw-200'"),
		ba("work_order", "work_order = 'WO-9'"),
		ba("quantity", "quantity = 99"),
		ba("operator", "operator = 'bob'"),
		ba("station", "station = 'st2'"),
		ba("state", "state = 'closed'"),
		ba("opened_at", "opened_at = opened_at - 1000"),
		ba("closed_at", "closed_at = 12345"),
		k("public", "public = ?", []byte("forged")),
		k("handle", "handle = 2164391937"),
		k("name", "name = ?", []byte("forged")),
		k("created_at", "created_at = created_at + 1"),
		c("der", "der = ?", []byte("forged")),
		c("serial_hex", "serial_hex = 'ff'"),
		c("not_after", "not_after = 1000"),
		c("created_at", "created_at = created_at + 1"),
		st("board", "board_id = (SELECT id FROM boards WHERE serial = 'R1')"),
		st("attempt", "attempt = 9"),
		st("step", "step = 'other'"),
		st("phase", "phase = 'failed'"),
		st("started_at", "started_at = started_at - 1"),
		st("finished_at", "finished_at = finished_at + 1"),
		st("duration_ns", "duration_ns = 1"),
		st("tpm_time_ns", "tpm_time_ns = 1"),
		st("detail", "detail = 'edited'"),
		x("batch", "batch = 'B2'"),
		x("format", "format = 'json'"),
		x("file_sha256", "file_sha256 = 'cd'"),
		x("boards", "boards = 9"),
		x("station", "station = 'st2'"),
		x("created_at", "created_at = created_at + 1"),
		x("pushed_at", "pushed_at = NULL"),
		row("delete batch", "batches", EmptyBatch, "DELETE FROM batches WHERE id = 'B3'"),
		row("insert batch", "batches", "B9", "INSERT INTO batches (id, product, work_order, quantity, operator, station, state, opened_at) VALUES ('B9', 'gw-100', 'W', 1, 'alice', 'st1', 'open', 1)"),
		row("delete board", "boards", InProgress, "DELETE FROM boards WHERE serial = 'N1'"),
		row("insert board", "boards", "Z9", `INSERT INTO boards (serial, ek_pub_sha256, batch, state, station, created_at, updated_at)
			VALUES ('Z9', ?, 'B1', 'provisioned', 'st1', 1, 1)`, EKID(77)),
		row("delete key", "keys", "P1/1/idevid", "DELETE FROM keys WHERE kind = 'idevid' AND board_id = "+p1),
		row("insert key", "keys", "F1/1/iak", `INSERT INTO keys (board_id, attempt, kind, public, handle, name, created_at)
			SELECT id, 1, 'iak', ?, 1, ?, 1 FROM boards WHERE serial = 'F1'`, []byte("p"), []byte("n")),
		row("delete certificate", "certificates", "P1/1/iak", "DELETE FROM certificates WHERE kind = 'iak' AND board_id = "+p1),
		row("insert certificate", "certificates", "F1/1/iak", `INSERT INTO certificates (board_id, attempt, kind, der, serial_hex, not_after, created_at)
			SELECT id, 1, 'iak', ?, '01', 1, 1 FROM boards WHERE serial = 'F1'`, []byte("d")),
		row("delete step", "steps", "", "DELETE FROM steps WHERE id = (SELECT MAX(id) FROM steps WHERE board_id = "+p1+")"),
		row("insert step", "steps", "", `INSERT INTO steps (board_id, attempt, step, phase, started_at)
			SELECT id, 1, 'extra', 'done', 1 FROM boards WHERE serial = 'F1'`),
		row("delete export", "ek_list_exports", "1", "DELETE FROM ek_list_exports"),
		row("insert export", "ek_list_exports", "2", `INSERT INTO ek_list_exports (id, batch, format, file_sha256, boards, station, created_at)
			VALUES (2, 'B1', 'csv', 'ef', 1, 'st1', 1)`),
	}
}

// Apply runs c against the inventory at dbURL on a connection of its own.
func Apply(t testing.TB, dbURL string, c Tamper) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dbURL, sqldb.Options{What: "tampering", SQLiteReaders: 1, PostgresConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.W.ExecContext(ctx, db.Rebind(c.SQL), c.Args...)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		t.Fatalf("%s: changed no row (%v)", c.Name, err)
	}
}

// Exec runs any SQL against the inventory at dbURL behind the store's back.
func Exec(t testing.TB, dbURL, query string, args ...any) {
	t.Helper()
	Apply(t, dbURL, Tamper{Name: query, SQL: query, Args: args})
}

// Names reports whether ds holds a divergence c must cause.
func Names(ds []records.Divergence, c Tamper) bool {
	for _, d := range ds {
		if d.Table == c.Table && d.Field == c.Field && (c.Key == "" || d.Key == c.Key) {
			return true
		}
	}
	return false
}
