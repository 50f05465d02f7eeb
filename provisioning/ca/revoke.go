package ca

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
)

// Revocation: a board certificate (IAK or IDevID, issued by the issuing CA) is revoked by board serial or
// certificate serial and then shows in the CRL and as revoked in OCSP (crl.go, ocsp.go); a station
// credential (under the station access CA) is revoked by its certificate and from then on refused at the
// TLS handshake (StationRevocationCheck). Revoking twice keeps the first record.

// Revocation is one row of ca_revocations.
type Revocation struct {
	SerialNumber string // lowercase hex, as ca_certificates.serial_number
	Kind         string // "iak", "idevid" or "station"
	BoardSerial  string // for a board certificate
	Subject      string // a station's CN
	Reason       int    // RFC 5280 5.3.1 CRLReason
	RevokedAt    time.Time
}

// KindStation marks a revoked station credential.
const KindStation = "station"

// ParseReason reads an RFC 5280 CRLReason by name (case-insensitive) or number: provisioning.ParseCRLReason,
// the rule a station's --crl-reason follows too.
func ParseReason(s string) (int, error) { return provisioning.ParseCRLReason(s) }

// SerialHex is how the store keys a certificate serial.
func SerialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ParseSerialHex reads a certificate serial in hex, with or without colons or a 0x prefix (as openssl and
// browsers print them), into the store's form.
func ParseSerialHex(s string) (string, error) {
	t := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")))
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("certificate serial %q is not a positive hex number", printable(s))
	}
	return SerialHex(n), nil
}

const (
	qRevocationInsert = `INSERT INTO ca_revocations (serial_number, kind, board_serial, subject, reason, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (serial_number) DO NOTHING`
	qRevocationGet = `SELECT serial_number, kind, board_serial, subject, reason, revoked_at FROM ca_revocations
		WHERE serial_number = ?`
	qRevocationsBoard = `SELECT serial_number, kind, board_serial, subject, reason, revoked_at FROM ca_revocations
		WHERE kind <> 'station' ORDER BY revoked_at, serial_number`
	qCertificateBySerial = `SELECT serial_number, kind, board_serial, ek_sha256, session_id, station, der, not_before,
		not_after, issued_at FROM ca_certificates WHERE serial_number = ?`
)

// Revoke records r; it reports false when the certificate was already revoked (the first record stays).
func (s *Store) Revoke(ctx context.Context, r Revocation) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(qRevocationInsert), r.SerialNumber, r.Kind, r.BoardSerial, r.Subject, r.Reason, ms(r.RevokedAt))
	if err != nil {
		return false, fmt.Errorf("recording the revocation: %w", mapDBError(err))
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func scanRevocation(sc interface{ Scan(...any) error }) (*Revocation, error) {
	var r Revocation
	var at int64
	if err := sc.Scan(&r.SerialNumber, &r.Kind, &r.BoardSerial, &r.Subject, &r.Reason, &at); err != nil {
		return nil, err
	}
	r.RevokedAt = fromMS(at)
	return &r, nil
}

// RevocationOf is the revocation of the certificate with serial (SerialHex), nil when it is not revoked.
func (s *Store) RevocationOf(ctx context.Context, serial string) (*Revocation, error) {
	r, err := scanRevocation(s.db.QueryRowxContext(ctx, s.q(qRevocationGet), serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the revocation of %s: %w", serial, err)
	}
	return r, nil
}

// BoardRevocations lists every revoked board certificate, oldest first (the CRL's entries).
func (s *Store) BoardRevocations(ctx context.Context) ([]Revocation, error) {
	rows, err := s.db.QueryxContext(ctx, s.q(qRevocationsBoard))
	if err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		r, err := scanRevocation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// RevocationCounts is the number of revoked certificates by kind.
func (s *Store) RevocationCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryxContext(ctx, `SELECT kind, COUNT(*) FROM ca_revocations GROUP BY kind`)
	if err != nil {
		return nil, fmt.Errorf("counting revocations: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// CertificateBySerial is the board certificate this CA issued under serial (SerialHex), nil when none.
func (s *Store) CertificateBySerial(ctx context.Context, serial string) (*IssuedCert, error) {
	var c IssuedCert
	var nb, na, ia int64
	err := s.db.QueryRowxContext(ctx, s.q(qCertificateBySerial), serial).Scan(&c.SerialNumber, &c.Kind, &c.BoardSerial,
		&c.EKSHA256, &c.SessionID, &c.Station, &c.DER, &nb, &na, &ia)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading certificate %s: %w", serial, err)
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = fromMS(nb), fromMS(na), fromMS(ia)
	return &c, nil
}

// RevokeRequest names what upstream-ca revoke revokes: every certificate of a board (BoardSerial), one
// board certificate (CertSerial, hex) or a station credential (StationCert, the certificate itself).
type RevokeRequest struct {
	Dir, DB     string
	BoardSerial string
	CertSerial  string
	StationCert *x509.Certificate
	Reason      int
}

// RevokeResult says what was revoked now and what had been revoked before.
type RevokeResult struct {
	Revoked, Already []Revocation
}

// Revoke revokes what req names in the CA in req.Dir and logs an event per certificate.
func Revoke(ctx context.Context, req RevokeRequest) (*RevokeResult, error) {
	cfg, err := LoadConfig(req.Dir)
	if err != nil {
		return nil, err
	}
	dbURL := req.DB
	if dbURL == "" {
		dbURL = cfg.DB
	}
	if dbURL == "" {
		dbURL = "sqlite://" + filepath.Join(req.Dir, "ca.db")
	}
	st, err := OpenStore(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	now := clock.Now()
	var todo []Revocation
	switch {
	case req.StationCert != nil:
		access, err := ReadCertificate(filepath.Join(req.Dir, AccessCertFile))
		if err != nil {
			return nil, err
		}
		if err := req.StationCert.CheckSignatureFrom(access); err != nil {
			return nil, fmt.Errorf("the certificate of %q was not issued by this CA's station access CA: %v", printable(req.StationCert.Subject.CommonName), err)
		}
		todo = append(todo, Revocation{SerialNumber: SerialHex(req.StationCert.SerialNumber), Kind: KindStation, Subject: req.StationCert.Subject.CommonName})
	case req.CertSerial != "":
		serial, err := ParseSerialHex(req.CertSerial)
		if err != nil {
			return nil, err
		}
		c, err := st.CertificateBySerial(ctx, serial)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("this CA issued no board certificate with serial %s (a station credential is revoked with --station-cert)", serial)
		}
		todo = append(todo, Revocation{SerialNumber: c.SerialNumber, Kind: c.Kind, BoardSerial: c.BoardSerial})
	case req.BoardSerial != "":
		certs, err := st.CertificatesByBoard(ctx, req.BoardSerial)
		if err != nil {
			return nil, err
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("this CA issued no certificate to board %q; check the serial", printable(req.BoardSerial))
		}
		for _, c := range certs {
			todo = append(todo, Revocation{SerialNumber: c.SerialNumber, Kind: c.Kind, BoardSerial: c.BoardSerial})
		}
	default:
		return nil, errors.New("name a board serial, a certificate serial or a station certificate to revoke")
	}
	res := &RevokeResult{}
	for _, r := range todo {
		r.Reason, r.RevokedAt = req.Reason, now
		added, err := st.Revoke(ctx, r)
		if err != nil {
			return res, err
		}
		if !added {
			prev, err := st.RevocationOf(ctx, r.SerialNumber)
			if err != nil || prev == nil {
				return res, fmt.Errorf("reading the earlier revocation of %s: %v", r.SerialNumber, err)
			}
			res.Already = append(res.Already, *prev)
			continue
		}
		res.Revoked = append(res.Revoked, r)
		if err := st.LogEvent(ctx, Event{At: now, Station: "operator", Kind: "revoked", Serial: r.BoardSerial,
			Detail: fmt.Sprintf("%s certificate %s revoked, reason %d %s", r.Kind, r.SerialNumber, r.Reason, r.Subject)}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// StationRevocationCheck is a tls.Config.VerifyConnection for the enrollment API: a station whose
// client certificate was revoked is refused at the handshake, whatever its chain says. A store failure
// refuses too: the CA cannot tell a revoked station from a good one then.
func StationRevocationCheck(st *Store) func(ctx context.Context, leaf *x509.Certificate) error {
	return func(ctx context.Context, leaf *x509.Certificate) error {
		r, err := st.RevocationOf(ctx, SerialHex(leaf.SerialNumber))
		if err != nil {
			return fmt.Errorf("checking station %q against the revocations: %w", printable(leaf.Subject.CommonName), err)
		}
		if r != nil {
			return fmt.Errorf("station %q: its certificate %s was revoked on %s (reason %d)", printable(leaf.Subject.CommonName),
				r.SerialNumber, r.RevokedAt.Format(time.RFC3339), r.Reason)
		}
		return nil
	}
}

// RevokeBoard revokes, for station (POST provisioning.PathRevoke), every certificate this CA issued to
// the board req.Serial through that station: an RMA or a deprovision at the line. The board's
// certificates issued through another station are the CA operator's to revoke (upstream-ca revoke
// --board), so a station cannot revoke another line's boards. Revoking twice keeps the first record.
func (v *Verifier) RevokeBoard(ctx context.Context, station string, req *provisioning.RevokeBoardRequest) (*provisioning.RevokeBoardResult, error) {
	if err := checkRevokeFields(req); err != nil {
		return nil, err
	}
	certs, err := v.Store.CertificatesByBoard(ctx, req.Serial)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, provisioning.Errorf(provisioning.CodeBoardUnknown, "this CA issued no certificate to board %q; check the serial", req.Serial)
	}
	var mine []IssuedCert
	others := map[string]bool{}
	for _, c := range certs {
		if c.Station == station {
			mine = append(mine, c)
		} else {
			others[c.Station] = true
		}
	}
	if len(mine) == 0 {
		names := make([]string, 0, len(others))
		for n := range others {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, provisioning.Errorf(provisioning.CodeRevokeRefused,
			"board %q's certificates were issued through station %s, not %s; ask the CA operator (upstream-ca revoke --board)",
			req.Serial, strings.Join(names, ", "), station)
	}
	now := v.now()
	res := &provisioning.RevokeBoardResult{Revoked: []string{}, Already: []string{}}
	for _, c := range mine {
		r := Revocation{SerialNumber: c.SerialNumber, Kind: c.Kind, BoardSerial: c.BoardSerial, Reason: req.Reason, RevokedAt: now}
		added, err := v.Store.Revoke(ctx, r)
		if err != nil {
			return nil, err
		}
		if !added {
			res.Already = append(res.Already, c.SerialNumber)
			continue
		}
		res.Revoked = append(res.Revoked, c.SerialNumber)
		if err := v.Store.LogEvent(ctx, Event{At: now, Station: station, Kind: "revoked", Serial: c.BoardSerial,
			Detail: fmt.Sprintf("%s certificate %s revoked by the station, reason %d", c.Kind, c.SerialNumber, req.Reason)}); err != nil {
			return nil, err
		}
	}
	v.log().Info("board certificates revoked by the station", "station", station, "serial", req.Serial,
		"revoked", len(res.Revoked), "already", len(res.Already))
	return res, nil
}

// checkRevokeFields bounds a station's revoke request: a serial by the enrollment's rule, and a reason a
// full CRL carries.
func checkRevokeFields(req *provisioning.RevokeBoardRequest) error {
	if len(req.Serial) > provisioning.MaxSerialLen {
		return provisioning.Errorf(provisioning.CodeTooLarge, "serial is %d bytes, over the %d-byte bound", len(req.Serial), provisioning.MaxSerialLen)
	}
	if err := CheckSerial(req.Serial); err != nil {
		return provisioning.Errorf(provisioning.CodeBadRequest, "%v", err)
	}
	if req.Reason < 0 || req.Reason > 10 || req.Reason == 7 || req.Reason == 8 {
		return provisioning.Errorf(provisioning.CodeBadRequest, "reason %d is not an RFC 5280 CRLReason a full CRL carries (0-6, 9, 10)", req.Reason)
	}
	return nil
}
