package soak

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/records"
)

// caCert is one row of the CA's own table of what it issued.
type caCert struct {
	Serial string `db:"serial_number"`
	Kind   string `db:"kind"`
	Board  string `db:"board_serial"`
	EK     []byte `db:"ek_sha256"`
	DER    []byte `db:"der"`
}

// The one query the soak makes of the CA's database: every certificate the CA issued (the CA has no API that
// lists them, and the check must not trust the station's account of them).
const qCACertificates = `SELECT serial_number, kind, board_serial, ek_sha256, der FROM ca_certificates ORDER BY issued_at`

func certKey(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "unparseable:" + hex.EncodeToString(sha256Of(der))
	}
	return c.SerialNumber.Text(16)
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// check runs the invariants of issue 14 over what the run left:
//
//  1. every board is provisioned with the same certificates in its TPM (read when it left the slot), in
//     the inventory and at the CA, or recorded failed (or stopped) with a reason; nothing is in progress;
//  2. no EK was issued certificates under two serials, no serial under two EKs, and no EK got two
//     certificates of one kind;
//  3. no certificate the CA issued is unknown to the inventory;
//  4. the inventory holds no board of the batch the line did not put in a slot.
//
// The audit chain (station audit verify) is checked by the caller.
func (l *line) check(ctx context.Context) error {
	db, err := sqldb.Open(ctx, l.pg.URL("ca"), sqldb.Options{What: "CA database"})
	if err != nil {
		return err
	}
	defer db.Close()
	var issued []caCert
	if err := db.R.SelectContext(ctx, &issued, qCACertificates); err != nil {
		return fmt.Errorf("reading the CA's certificates: %w", err)
	}
	l.res.CACertificates = len(issued)
	atCA := map[string]caCert{}
	ekSerials, serialEKs, perKind := map[string]map[string]bool{}, map[string]map[string]bool{}, map[string]int{}
	for _, c := range issued {
		atCA[certKey(c.DER)] = c
		ek := hex.EncodeToString(c.EK)
		add := func(m map[string]map[string]bool, k, v string) {
			if m[k] == nil {
				m[k] = map[string]bool{}
			}
			m[k][v] = true
		}
		add(ekSerials, ek, c.Board)
		add(serialEKs, c.Board, ek)
		perKind[ek+"/"+c.Kind]++
	}
	for ek, s := range ekSerials {
		if len(s) > 1 {
			l.violate("EK %s…: the CA issued certificates under %d serials: %s", ek[:16], len(s), keys(s))
		}
	}
	for serial, e := range serialEKs {
		if len(e) > 1 {
			l.violate("serial %s: the CA issued certificates for %d EKs", serial, len(e))
		}
	}
	for k, n := range perKind {
		if n > 1 {
			l.violate("EK %s…: the CA issued %d %s certificates", k[:16], n, k[strings.IndexByte(k, '/')+1:])
		}
	}

	known := map[string]bool{} // every certificate the inventory holds, any attempt
	mine := map[string]bool{}
	for _, br := range l.boards {
		mine[br.serial] = true
		bd, err := l.inv.GetBoardBySerial(ctx, br.serial)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Every station run of it died before its claim (or it never got a slot): the line lost it.
			l.violate("board %s: not in the inventory after %d station runs: %v", br.serial, br.attempts, err)
			continue
		}
		certs, err := l.inv.ListCertificates(ctx, br.serial)
		if err != nil {
			return err
		}
		latest := map[records.KeyKind]records.Certificate{}
		for _, c := range certs {
			known[certKey(c.DER)] = true
			if c.Attempt >= latest[c.Kind].Attempt {
				latest[c.Kind] = c
			}
		}
		if br.interrupted && bd.State == records.StateProvisioned {
			l.res.Recoveries++
		} else if br.attempts > 1 && bd.State == records.StateProvisioned {
			l.res.Recoveries++
		}
		switch bd.State {
		case records.StateProvisioned:
			l.res.Provisioned++
			l.checkProvisioned(br, bd, latest, atCA)
		case records.StateFailed, records.StateStopped:
			l.res.Failed++
			if bd.ReasonCode == "" {
				l.violate("board %s: %s without a reason", br.serial, bd.State)
			}
			l.res.FailedReasons[bd.ReasonCode]++
		default:
			l.violate("board %s: left %s at step %s after the final reconcile", br.serial, bd.State, bd.CurrentStep)
		}
	}
	for k, c := range atCA {
		if !known[k] {
			l.violate("certificate %s (%s of board %s) issued by the CA is unknown to the inventory", k, c.Kind, c.Board)
		}
	}
	return l.inv.ListBoards(ctx, l.batch, func(bd *records.Board) error {
		if !mine[bd.Serial] {
			l.violate("board %s is in the inventory's batch %s but was never in a slot", bd.Serial, l.batch)
		}
		return nil
	})
}

func (l *line) checkProvisioned(br *boardResult, bd *records.Board, latest map[records.KeyKind]records.Certificate, atCA map[string]caCert) {
	if br.tpmErr != nil {
		l.violate("board %s: provisioned, but its TPM could not be read: %v", br.serial, br.tpmErr)
		return
	}
	for _, k := range []struct {
		kind records.KeyKind
		tpm  []byte
	}{{records.KindIAK, br.tpmIAK}, {records.KindIDevID, br.tpmIDevID}} {
		inv, ok := latest[k.kind]
		if !ok {
			l.violate("board %s: provisioned without an %s certificate in the inventory", br.serial, k.kind)
			continue
		}
		if !bytes.Equal(k.tpm, sha256Of(inv.DER)) {
			l.violate("board %s: the %s certificate in its TPM is not the inventory's", br.serial, k.kind)
		}
		c, ok := atCA[certKey(inv.DER)]
		switch {
		case !ok:
			l.violate("board %s: its %s certificate %s is not among the CA's", br.serial, k.kind, certKey(inv.DER))
		case !bytes.Equal(c.DER, inv.DER) || c.Board != br.serial || c.Kind != string(k.kind):
			l.violate("board %s: the CA's record of its %s certificate differs from the inventory's", br.serial, k.kind)
		case !bytes.Equal(c.EK, caEKHash(bd.EKCert)):
			l.violate("board %s: the CA issued its %s certificate to EK %x, not the EK whose certificate the inventory records", br.serial, k.kind, c.EK)
		}
	}
}

// caEKHash is the CA's EK identity (ca.EKPublicSHA256: SHA-256 of the certificate key's SubjectPublicKeyInfo)
// of the EK certificate the inventory recorded; the inventory's own EK hash is over the TPM's public area.
func caEKHash(ekCert []byte) []byte {
	c, err := ekcert.Parse(ekCert)
	if err != nil {
		return nil
	}
	h, err := ca.EKPublicSHA256(c.X509.PublicKey)
	if err != nil {
		return nil
	}
	return h
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
