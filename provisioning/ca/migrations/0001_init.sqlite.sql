-- Schema of the upstream CA's state, SQLite family (modernc.org/sqlite). Times are Unix milliseconds (UTC),
-- hashes and DER are BLOBs. Each NNNN_name.ENGINE.sql file runs once, in order (internal/sqldb); add new
-- files, never edit an applied one. Keep in step with postgres.sql.

CREATE TABLE ca_challenges (
    id            TEXT    PRIMARY KEY,
    station       TEXT    NOT NULL,
    serial        TEXT    NOT NULL,
    product       TEXT    NOT NULL,
    rework        BOOLEAN NOT NULL,
    ek_sha256     BLOB    NOT NULL,
    ek_cert       BLOB    NOT NULL,
    ek_public     BLOB    NOT NULL,
    iak_public    BLOB    NOT NULL,
    idevid_public BLOB    NOT NULL,
    tpm_info      TEXT    NOT NULL,
    secret_sha256 BLOB    NOT NULL,
    nonce         BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used          BOOLEAN NOT NULL DEFAULT FALSE,
    used_at       INTEGER
);
CREATE INDEX ca_challenges_expires ON ca_challenges (expires_at);

-- One row per EK ever enrolled. The EK stays bound to its serial for good; a rework that moves a serial to a
-- new TPM retires the old row (the old EK stays unusable under any other serial).
CREATE TABLE ca_enrollments (
    ek_sha256   BLOB    PRIMARY KEY,
    serial      TEXT    NOT NULL,
    product     TEXT    NOT NULL,
    station     TEXT    NOT NULL,
    ek_cert     BLOB    NOT NULL,
    enrolled_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    reworks     INTEGER NOT NULL DEFAULT 0,
    retired     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX ca_enrollments_serial_live ON ca_enrollments (serial) WHERE NOT retired;

CREATE TABLE ca_certificates (
    serial_number TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('iak', 'idevid')),
    board_serial  TEXT    NOT NULL,
    ek_sha256     BLOB    NOT NULL,
    session_id    TEXT    NOT NULL,
    station       TEXT    NOT NULL,
    der           BLOB    NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    issued_at     INTEGER NOT NULL
);
CREATE INDEX ca_certificates_board ON ca_certificates (board_serial);

CREATE TABLE ca_ek_list_entries (
    ek_sha256        BLOB    PRIMARY KEY,
    serial           TEXT    NOT NULL,
    batch            TEXT    NOT NULL,
    station          TEXT    NOT NULL,
    ek_cert          BLOB,
    ek_public        BLOB,
    tpm_manufacturer TEXT    NOT NULL,
    tpm_model        TEXT    NOT NULL,
    tpm_firmware     TEXT    NOT NULL,
    imported_at      INTEGER NOT NULL
);

CREATE TABLE ca_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    station    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    serial     TEXT    NOT NULL,
    ek_sha256  BLOB,
    session_id TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
