-- Schema of the upstream CA's state, PostgreSQL family (lib/pq). Times are Unix milliseconds (UTC),
-- hashes and DER are BYTEA. Each NNNN_name.ENGINE.sql file runs once, in order (internal/sqldb); add new
-- files, never edit an applied one. Keep in step with sqlite.sql.

CREATE TABLE ca_challenges (
    id            TEXT    PRIMARY KEY,
    station       TEXT    NOT NULL,
    serial        TEXT    NOT NULL,
    product       TEXT    NOT NULL,
    rework        BOOLEAN NOT NULL,
    ek_sha256     BYTEA   NOT NULL,
    ek_cert       BYTEA   NOT NULL,
    ek_public     BYTEA   NOT NULL,
    iak_public    BYTEA   NOT NULL,
    idevid_public BYTEA   NOT NULL,
    tpm_info      TEXT    NOT NULL,
    secret_sha256 BYTEA   NOT NULL,
    nonce         BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    used          BOOLEAN NOT NULL DEFAULT FALSE,
    used_at       BIGINT
);
CREATE INDEX ca_challenges_expires ON ca_challenges (expires_at);

-- One row per EK ever enrolled. The EK stays bound to its serial for good; a rework that moves a serial to a
-- new TPM retires the old row (the old EK stays unusable under any other serial).
CREATE TABLE ca_enrollments (
    ek_sha256   BYTEA   PRIMARY KEY,
    serial      TEXT    NOT NULL,
    product     TEXT    NOT NULL,
    station     TEXT    NOT NULL,
    ek_cert     BYTEA   NOT NULL,
    enrolled_at BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    reworks     INTEGER NOT NULL DEFAULT 0,
    retired     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX ca_enrollments_serial_live ON ca_enrollments (serial) WHERE NOT retired;

CREATE TABLE ca_certificates (
    serial_number TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('iak', 'idevid')),
    board_serial  TEXT    NOT NULL,
    ek_sha256     BYTEA   NOT NULL,
    session_id    TEXT    NOT NULL,
    station       TEXT    NOT NULL,
    der           BYTEA   NOT NULL,
    not_before    BIGINT  NOT NULL,
    not_after     BIGINT  NOT NULL,
    issued_at     BIGINT  NOT NULL
);
CREATE INDEX ca_certificates_board ON ca_certificates (board_serial);

CREATE TABLE ca_ek_list_entries (
    ek_sha256        BYTEA   PRIMARY KEY,
    serial           TEXT    NOT NULL,
    batch            TEXT    NOT NULL,
    station          TEXT    NOT NULL,
    ek_cert          BYTEA,
    ek_public        BYTEA,
    tpm_manufacturer TEXT    NOT NULL,
    tpm_model        TEXT    NOT NULL,
    tpm_firmware     TEXT    NOT NULL,
    imported_at      BIGINT  NOT NULL
);

CREATE TABLE ca_events (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT  NOT NULL,
    station    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    serial     TEXT    NOT NULL,
    ek_sha256  BYTEA,
    session_id TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
