package ca

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store sentinels. The verifier turns them into protocol errors.
var (
	ErrNotFound      = errors.New("not found")
	ErrChallengeUsed = errors.New("challenge already used")
	// ErrEKOtherSerial: the EK is enrolled under another serial; never allowed.
	ErrEKOtherSerial = errors.New("EK enrolled under another serial")
	// ErrAlreadyEnrolled: this EK and serial are enrolled; allowed again only as a rework.
	ErrAlreadyEnrolled = errors.New("EK already enrolled under this serial")
	// ErrSerialOtherEK: the serial is enrolled with another EK; allowed only as a rework (TPM replaced).
	ErrSerialOtherEK = errors.New("serial enrolled with another EK")
	// ErrEKListConflict: an EK list names an EK the CA already lists under another serial.
	ErrEKListConflict = errors.New("EK listed under another serial")
	// errUnique is what a driver's unique-constraint violation becomes (see mapDBError).
	errUnique = sqldb.ErrDuplicate
)

// mapDBError turns a unique-constraint violation from either engine into errUnique (wrapped with the
// original); sqldb.Classify reads the drivers' codes. Everything else passes through.
func mapDBError(err error) error {
	if _, sentinel := sqldb.Classify(err); sentinel == sqldb.ErrDuplicate {
		return fmt.Errorf("%w: %v", errUnique, err)
	}
	return err
}

// Store is the CA's durable state: challenges, enrollments, issued certificates, EK list entries and the event
// log, on SQLite (one CA process or several on one host) or PostgreSQL (several CA processes).
type Store struct {
	sdb    *sqldb.DB
	db     *sqlx.DB // sdb.W: one pool for reads and writes
	engine string   // "sqlite" or "postgres"
	// stmts holds an enrollment's four statements prepared on PostgreSQL (nil on SQLite): lib/pq sends a
	// statement without a name otherwise, and the server parses, analyses and plans it on every call;
	// prepared, a call is one Bind/Execute round trip as before and the server plans it once per
	// connection (the completion statement's plan was a fifth of its backend's CPU per enrollment).
	stmts *sqldb.StmtCache
}

// hotStatements are what every enrollment runs (prepared on PostgreSQL: Store.stmts).
var hotStatements = []string{qEnrollState, qPGChallengeInsert, qPGChallengeClaimFor, qPGCompleteFirst}

// OpenStore opens and migrates the store at dbURL: "sqlite://PATH" (PATH relative or absolute, e.g.
// sqlite:///var/lib/ca/ca.db) or "postgres://..." / "postgresql://..." (lib/pq; run-time parameters such as
// search_path may be given in the query string).
func OpenStore(ctx context.Context, dbURL string) (*Store, error) {
	// database/sql keeps only 2 idle connections by default: under concurrent enrollments every other query
	// would open a new PostgreSQL backend. Keep a pool as large as the requests in flight. SQLite keeps one
	// pool: WAL lets its readers run beside the writer.
	db, err := sqldb.Open(ctx, dbURL, sqldb.Options{What: "CA database", PostgresConns: 32})
	if err != nil {
		return nil, err
	}
	s := &Store{sdb: db, db: db.W, engine: db.Name}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating the %s database: %w", s.engine, err)
	}
	if s.engine == "postgres" {
		s.stmts = sqldb.NewStmtCache(s.db)
		queries := make([]string, len(hotStatements))
		for i, q := range hotStatements {
			queries[i] = s.q(q)
		}
		s.stmts.Prepare(ctx, queries)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmts.Close()
	return s.sdb.Close()
}

// runner is the pool, or the prepared statement of query when there is one; query is already rebound.
type runner interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
	GetContext(ctx context.Context, dest any, args ...any) error
	QueryxContext(ctx context.Context, args ...any) (*sqlx.Rows, error)
}

// poolRunner runs a query on the pool, unprepared.
type poolRunner struct {
	db    *sqlx.DB
	query string
}

func (p poolRunner) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return p.db.ExecContext(ctx, p.query, args...)
}

func (p poolRunner) GetContext(ctx context.Context, dest any, args ...any) error {
	return p.db.GetContext(ctx, dest, p.query, args...)
}

func (p poolRunner) QueryxContext(ctx context.Context, args ...any) (*sqlx.Rows, error) {
	return p.db.QueryxContext(ctx, p.query, args...)
}

// hot returns how to run one of hotStatements (query as written, not rebound).
func (s *Store) hot(query string) runner {
	q := s.q(query)
	if st, _ := s.stmts.Get(q); st != nil {
		return st
	}
	return poolRunner{db: s.db, query: q}
}

// Engine is "sqlite" or "postgres".
func (s *Store) Engine() string { return s.engine }

func (s *Store) q(query string) string { return s.db.Rebind(query) }

// inTx runs fn in one transaction and commits if it returns nil; a transaction that lost a race (busy,
// serialization failure, deadlock) runs again from the start.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return s.sdb.InTx(ctx, sqldb.TxOptions{}, fn)
}

// migrate applies migrations/NNNN_name.ENGINE.sql. Builds before sqldb counted the applied versions in
// ca_migrations (applied_at in milliseconds); sqldb moves them into schema_migrations under the owner "ca".
func (s *Store) migrate(ctx context.Context) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	return s.sdb.Migrate(ctx, sqldb.Migrations{Owner: "ca", FS: files, Legacy: "ca_migrations", LegacyUnit: time.Millisecond}, clock.Now)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// ChallengeRecord is a round-1 session as stored.
type ChallengeRecord struct {
	ID           string
	Station      string
	Serial       string
	Product      string
	Rework       bool
	EKSHA256     []byte
	EKCert       []byte // normalised DER
	EKPublic     []byte
	IAKPublic    []byte
	IDevIDPublic []byte
	TPMInfo      string // JSON of provisioning.TPMInfo
	SecretSHA256 []byte // the secret itself is never stored
	Nonce        []byte
	CreatedAt    time.Time
	ExpiresAt    time.Time
	Used         bool
}

type challengeRow struct {
	ID           string `db:"id"`
	Station      string `db:"station"`
	Serial       string `db:"serial"`
	Product      string `db:"product"`
	Rework       bool   `db:"rework"`
	EKSHA256     []byte `db:"ek_sha256"`
	EKCert       []byte `db:"ek_cert"`
	EKPublic     []byte `db:"ek_public"`
	IAKPublic    []byte `db:"iak_public"`
	IDevIDPublic []byte `db:"idevid_public"`
	TPMInfo      string `db:"tpm_info"`
	SecretSHA256 []byte `db:"secret_sha256"`
	Nonce        []byte `db:"nonce"`
	CreatedAt    int64  `db:"created_at"`
	ExpiresAt    int64  `db:"expires_at"`
	Used         bool   `db:"used"`
}

// CreateChallenge stores a new session.
func (s *Store) CreateChallenge(ctx context.Context, c *ChallengeRecord) error {
	query := qChallengeInsert
	if s.engine == "postgres" {
		query = qPGChallengeInsert
	}
	_, err := s.hot(query).ExecContext(ctx, c.ID, c.Station, c.Serial, c.Product, c.Rework,
		c.EKSHA256, c.EKCert, c.EKPublic, c.IAKPublic, c.IDevIDPublic, c.TPMInfo, c.SecretSHA256, c.Nonce,
		ms(c.CreatedAt), ms(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("storing challenge: %w", mapDBError(err))
	}
	return nil
}

func (r *challengeRow) record() *ChallengeRecord {
	return &ChallengeRecord{
		ID: r.ID, Station: r.Station, Serial: r.Serial, Product: r.Product, Rework: r.Rework,
		EKSHA256: r.EKSHA256, EKCert: r.EKCert, EKPublic: r.EKPublic, IAKPublic: r.IAKPublic,
		IDevIDPublic: r.IDevIDPublic, TPMInfo: r.TPMInfo, SecretSHA256: r.SecretSHA256, Nonce: r.Nonce,
		CreatedAt: fromMS(r.CreatedAt), ExpiresAt: fromMS(r.ExpiresAt), Used: r.Used,
	}
}

// Challenge loads a session; ErrNotFound if there is none.
func (s *Store) Challenge(ctx context.Context, id string) (*ChallengeRecord, error) {
	var r challengeRow
	if err := s.db.GetContext(ctx, &r, s.q(qChallengeGet), id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("loading challenge: %w", err)
	}
	return r.record(), nil
}

// ErrNotClaimable: ClaimChallengeFor found no unused, unexpired session of that id opened by that station.
var ErrNotClaimable = errors.New("no claimable challenge")

// ClaimChallengeFor marks station's session id used, if it is unused and has not expired at now, and
// returns it as it was loaded, in one statement. Of any number of concurrent claims, across processes,
// exactly one succeeds; every other call, and a claim of a session that is unknown, another station's or
// expired (all left untouched), gets ErrNotClaimable: Challenge then tells which. On PostgreSQL the claim
// commits without waiting for the disk (qPGChallengeClaimFor): the caller's next write that commits
// (CompleteEnrollment, LogEvent) makes it durable, and the caller answers only after that write.
func (s *Store) ClaimChallengeFor(ctx context.Context, id, station string, now time.Time) (*ChallengeRecord, error) {
	var r challengeRow
	query := qChallengeClaimFor
	if s.engine == "postgres" {
		query = qPGChallengeClaimFor
	}
	if err := s.hot(query).GetContext(ctx, &r, ms(now), id, station, ms(now)); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotClaimable
		}
		return nil, fmt.Errorf("claiming challenge: %w", mapDBError(err))
	}
	r.Used = true
	return r.record(), nil
}

// PurgeChallenges drops sessions that expired before cutoff.
func (s *Store) PurgeChallenges(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(qChallengePurge), ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("purging challenges: %w", err)
	}
	return res.RowsAffected()
}

// Enrollment binds an EK to a board serial.
type Enrollment struct {
	EKSHA256   []byte    `db:"ek_sha256"`
	Serial     string    `db:"serial"`
	Product    string    `db:"product"`
	Station    string    `db:"station"`
	EnrolledAt time.Time `db:"-"`
	UpdatedAt  time.Time `db:"-"`
	Reworks    int       `db:"reworks"`
	Retired    bool      `db:"retired"`
}

type enrollmentRow struct {
	Enrollment
	EnrolledAtMS int64 `db:"enrolled_at"`
	UpdatedAtMS  int64 `db:"updated_at"`
}

func (r *enrollmentRow) get() *Enrollment {
	e := r.Enrollment
	e.EnrolledAt, e.UpdatedAt = fromMS(r.EnrolledAtMS), fromMS(r.UpdatedAtMS)
	return &e
}

func getEnrollment(ctx context.Context, q sqlx.QueryerContext, query string, arg any) (*Enrollment, error) {
	var r enrollmentRow
	if err := sqlx.GetContext(ctx, q, &r, query, arg); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		return nil, fmt.Errorf("loading enrollment: %w", err)
	}
	return r.get(), nil
}

// EnrollmentByEK returns the enrollment of an EK; ErrNotFound if it has none.
func (s *Store) EnrollmentByEK(ctx context.Context, ekSHA256 []byte) (*Enrollment, error) {
	e, err := getEnrollment(ctx, s.db, s.q(qEnrollmentByEK), ekSHA256)
	if err == nil && e == nil {
		return nil, ErrNotFound
	}
	return e, err
}

// bindingRule is the one rule about EKs and serials, shared by round 1 (a read-only check) and the final
// write: an EK is never enrolled under two serials; the same EK and serial enroll again only as a rework; a
// serial moves to another EK only as a rework. byEK is the EK's enrollment, bySerial the serial's live one.
func bindingRule(byEK, bySerial *Enrollment, ekSHA256 []byte, serial string, rework bool) error {
	if byEK != nil && byEK.Serial != serial {
		return ErrEKOtherSerial
	}
	if byEK != nil && !rework {
		return ErrAlreadyEnrolled
	}
	if bySerial != nil && string(bySerial.EKSHA256) != string(ekSHA256) && !rework {
		return ErrSerialOtherEK
	}
	return nil
}

// scanEnrollment reads the columns of qEnrollmentBinding (after src in qEnrollState).
func scanEnrollment(rows *sqlx.Rows, src *string) (*Enrollment, error) {
	var e Enrollment
	var enrolled, updated int64
	dst := []any{&e.EKSHA256, &e.Serial, &e.Product, &e.Station, &enrolled, &updated, &e.Reworks, &e.Retired}
	if src != nil {
		dst = append([]any{src}, dst...)
	}
	if err := rows.Scan(dst...); err != nil {
		return nil, fmt.Errorf("loading enrollment: %w", err)
	}
	e.EnrolledAt, e.UpdatedAt = fromMS(enrolled), fromMS(updated)
	return &e, nil
}

// sortEnrollment files an enrollment row of qEnrollmentBinding as the EK's, the serial's live one, or both.
func sortEnrollment(e *Enrollment, ekSHA256 []byte, serial string, byEK, bySerial **Enrollment) {
	if string(e.EKSHA256) == string(ekSHA256) {
		*byEK = e
	}
	if e.Serial == serial && !e.Retired {
		*bySerial = e
	}
}

// binding reads the EK's enrollment and the serial's live enrollment in one statement and applies
// bindingRule.
func binding(ctx context.Context, s *Store, q sqlx.QueryerContext, ekSHA256 []byte, serial string, rework bool) (byEK, bySerial *Enrollment, err error) {
	rows, err := q.QueryxContext(ctx, s.q(qEnrollmentBinding), ekSHA256, serial)
	if err != nil {
		return nil, nil, fmt.Errorf("loading enrollments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEnrollment(rows, nil)
		if err != nil {
			return nil, nil, err
		}
		sortEnrollment(e, ekSHA256, serial, &byEK, &bySerial)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("loading enrollments: %w", err)
	}
	if err := bindingRule(byEK, bySerial, ekSHA256, serial, rework); err != nil {
		return nil, nil, err
	}
	return byEK, bySerial, nil
}

// CheckBinding applies the EK/serial rule without writing: nil, ErrEKOtherSerial, ErrAlreadyEnrolled or
// ErrSerialOtherEK.
func (s *Store) CheckBinding(ctx context.Context, ekSHA256 []byte, serial string, rework bool) error {
	_, _, err := binding(ctx, s, s.db, ekSHA256, serial, rework)
	return err
}

// EnrollState is what round 1 reads about an EK and a serial before it issues a challenge.
type EnrollState struct {
	Listed       bool   // the EK is on an imported EK list
	ListedSerial string // the serial it is listed under
	ByEK         *Enrollment
	BySerial     *Enrollment // the serial's live enrollment
}

// Binding applies the EK/serial rule (see CheckBinding) to what was read.
func (st *EnrollState) Binding(ekSHA256 []byte, serial string, rework bool) error {
	return bindingRule(st.ByEK, st.BySerial, ekSHA256, serial, rework)
}

// EnrollState reads the EK list entry of an EK and the enrollments the EK/serial rule needs, in one
// statement.
func (s *Store) EnrollState(ctx context.Context, ekSHA256 []byte, serial string) (*EnrollState, error) {
	rows, err := s.hot(qEnrollState).QueryxContext(ctx, ekSHA256, serial, ekSHA256)
	if err != nil {
		return nil, fmt.Errorf("loading the EK's state: %w", err)
	}
	defer rows.Close()
	st := &EnrollState{}
	for rows.Next() {
		var src string
		e, err := scanEnrollment(rows, &src)
		if err != nil {
			return nil, err
		}
		switch src {
		case "enrollment":
			sortEnrollment(e, ekSHA256, serial, &st.ByEK, &st.BySerial)
		case "ek_list":
			st.Listed, st.ListedSerial = true, e.Serial
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading the EK's state: %w", err)
	}
	return st, nil
}

// IssuedCert is a certificate the CA issued.
type IssuedCert struct {
	SerialNumber string // hex
	Kind         string // "iak" or "idevid"
	BoardSerial  string
	EKSHA256     []byte
	SessionID    string
	Station      string
	DER          []byte
	NotBefore    time.Time
	NotAfter     time.Time
	IssuedAt     time.Time
}

// Event is one line of the CA's event log.
type Event struct {
	ID        int64
	At        time.Time
	Station   string
	Kind      string // e.g. "enrolled", "rework", "ek_list_imported"
	Serial    string
	EKSHA256  []byte
	SessionID string
	Detail    string
}

// Completion is everything round 2 writes once the proof holds.
type Completion struct {
	EKSHA256  []byte
	EKCert    []byte
	Serial    string
	Product   string
	Station   string
	Rework    bool
	At        time.Time
	Certs     []IssuedCert
	Events    []Event
	SessionID string
}

// CompleteEnrollment records the enrollment, its certificates and its events in one transaction, applying the
// EK/serial rule again inside it (round 1's check may be stale: another station may have won a race). A
// concurrent enrollment that slips past the reads hits the unique indexes and gets ErrEKOtherSerial or
// ErrSerialOtherEK.
func (s *Store) CompleteEnrollment(ctx context.Context, c *Completion) error {
	if s.engine == "postgres" && !c.Rework && len(c.Certs) == 2 && len(c.Events) == 1 {
		return s.completeFirstPG(ctx, c)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		byEK, bySerial, err := binding(ctx, s, tx, c.EKSHA256, c.Serial, c.Rework)
		if err != nil {
			return err
		}
		if bySerial != nil && string(bySerial.EKSHA256) != string(c.EKSHA256) {
			if _, err := tx.ExecContext(ctx, s.q(qEnrollmentRetire), ms(c.At), bySerial.EKSHA256); err != nil {
				return fmt.Errorf("retiring the serial's previous EK: %w", err)
			}
		}
		if byEK != nil {
			if _, err := tx.ExecContext(ctx, s.q(qEnrollmentRework), c.Product, c.Station, c.EKCert, ms(c.At), c.EKSHA256, c.Serial); err != nil {
				return fmt.Errorf("recording rework: %w", mapDBError(err))
			}
		} else if _, err := tx.ExecContext(ctx, s.q(qEnrollmentInsert), c.EKSHA256, c.Serial, c.Product, c.Station, c.EKCert, ms(c.At), ms(c.At)); err != nil {
			if err = mapDBError(err); errors.Is(err, errUnique) {
				return ErrEKOtherSerial
			}
			return fmt.Errorf("recording enrollment: %w", err)
		}
		for _, ct := range c.Certs {
			if _, err := tx.ExecContext(ctx, s.q(qCertificateInsert), ct.SerialNumber, ct.Kind, ct.BoardSerial, ct.EKSHA256,
				ct.SessionID, ct.Station, ct.DER, ms(ct.NotBefore), ms(ct.NotAfter), ms(ct.IssuedAt)); err != nil {
				return fmt.Errorf("recording certificate: %w", mapDBError(err))
			}
		}
		for _, ev := range c.Events {
			if err := insertEvent(ctx, s, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// completeFirstPG records a first enrollment (no rework) in one statement: qPGCompleteFirst. Its unique
// indexes refuse exactly what the EK/serial rule refuses for a first enrollment; when one does, the rule is
// applied to what is now committed to tell which refusal it is.
func (s *Store) completeFirstPG(ctx context.Context, c *Completion) error {
	args := []any{c.EKSHA256, c.Serial, c.Product, c.Station, c.EKCert, ms(c.At)}
	for _, ct := range c.Certs {
		args = append(args, ct.SerialNumber, ct.Kind, ct.BoardSerial, ct.EKSHA256, ct.SessionID, ct.Station, ct.DER,
			ms(ct.NotBefore), ms(ct.NotAfter), ms(ct.IssuedAt))
	}
	ev := c.Events[0]
	args = append(args, ms(ev.At), ev.Station, ev.Kind, ev.Serial, ev.EKSHA256, ev.SessionID, ev.Detail)
	_, err := s.hot(qPGCompleteFirst).ExecContext(ctx, args...)
	if err == nil {
		return nil
	}
	if err = mapDBError(err); !errors.Is(err, errUnique) {
		return fmt.Errorf("recording enrollment: %w", err)
	}
	if _, _, berr := binding(ctx, s, s.db, c.EKSHA256, c.Serial, false); berr != nil {
		return berr
	}
	return fmt.Errorf("recording enrollment: %w", err)
}

// CertificatesByBoard lists the certificates issued for a board serial, oldest first.
func (s *Store) CertificatesByBoard(ctx context.Context, serial string) ([]IssuedCert, error) {
	rows, err := s.db.QueryxContext(ctx, s.q(qCertificatesByBoard), serial)
	if err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	defer rows.Close()
	var out []IssuedCert
	for rows.Next() {
		var c IssuedCert
		var nb, na, ia int64
		if err := rows.Scan(&c.SerialNumber, &c.Kind, &c.BoardSerial, &c.EKSHA256, &c.SessionID, &c.Station, &c.DER, &nb, &na, &ia); err != nil {
			return nil, err
		}
		c.NotBefore, c.NotAfter, c.IssuedAt = fromMS(nb), fromMS(na), fromMS(ia)
		out = append(out, c)
	}
	return out, rows.Err()
}

func insertEvent(ctx context.Context, s *Store, x sqlx.ExecerContext, ev Event) error {
	if _, err := x.ExecContext(ctx, s.q(qEventInsert), ms(ev.At), ev.Station, ev.Kind, ev.Serial, ev.EKSHA256, ev.SessionID, ev.Detail); err != nil {
		return fmt.Errorf("recording event: %w", mapDBError(err))
	}
	return nil
}

// LogEvent appends one event.
func (s *Store) LogEvent(ctx context.Context, ev Event) error { return insertEvent(ctx, s, s.db, ev) }

// RecentEvents returns up to n events, newest first.
func (s *Store) RecentEvents(ctx context.Context, n int) ([]Event, error) {
	rows, err := s.db.QueryxContext(ctx, s.q(qEventsRecent), n)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var ev Event
		var at int64
		if err := rows.Scan(&ev.ID, &at, &ev.Station, &ev.Kind, &ev.Serial, &ev.EKSHA256, &ev.SessionID, &ev.Detail); err != nil {
			return nil, err
		}
		ev.At = fromMS(at)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// StoredEKListEntry is one EK list entry as the CA keeps it.
type StoredEKListEntry struct {
	EKSHA256        []byte `db:"ek_sha256"`
	Serial          string `db:"serial"`
	Batch           string `db:"batch"`
	Station         string `db:"station"`
	EKCert          []byte `db:"ek_cert"`
	EKPublic        []byte `db:"ek_public"`
	TPMManufacturer string `db:"tpm_manufacturer"`
	TPMModel        string `db:"tpm_model"`
	TPMFirmware     string `db:"tpm_firmware"`
	ImportedAtMS    int64  `db:"imported_at"`
}

// ImportEKList stores entries in one transaction: all or nothing. An entry already listed under the same
// serial is left as it is (uploads are idempotent); one listed under another serial fails the whole list with
// ErrEKListConflict. It returns how many entries were new.
func (s *Store) ImportEKList(ctx context.Context, entries []StoredEKListEntry, ev Event) (added int, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		added = 0
		for i := range entries {
			e := &entries[i]
			var have StoredEKListEntry
			err := tx.GetContext(ctx, &have, s.q(qEKListGet), e.EKSHA256)
			switch {
			case err == nil:
				if have.Serial != e.Serial {
					return fmt.Errorf("entry %d (serial %q): %w", i, e.Serial, ErrEKListConflict)
				}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("loading EK list entry: %w", err)
			}
			if _, err := tx.ExecContext(ctx, s.q(qEKListInsert), e.EKSHA256, e.Serial, e.Batch, e.Station, e.EKCert, e.EKPublic,
				e.TPMManufacturer, e.TPMModel, e.TPMFirmware, e.ImportedAtMS); err != nil {
				if err = mapDBError(err); errors.Is(err, errUnique) {
					return fmt.Errorf("entry %d (serial %q): %w", i, e.Serial, ErrEKListConflict)
				}
				return fmt.Errorf("storing EK list entry: %w", err)
			}
			added++
		}
		logged := ev // a rerun of this transaction starts again from the caller's detail
		logged.Detail = fmt.Sprintf("%s; %d new of %d", ev.Detail, added, len(entries))
		return insertEvent(ctx, s, tx, logged)
	})
	return added, err
}
