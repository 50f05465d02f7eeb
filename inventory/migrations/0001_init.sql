-- tpmline inventory, schema 1. Portable SQL for SQLite and PostgreSQL; the only per-engine pieces are the
-- tokens {{ID}} (an auto-assigned 64-bit primary key) and {{BLOB}} (bytes), replaced by internal/sqldb.
-- Times are unix nanoseconds (UTC) in BIGINT, except certificate not_after, which is unix seconds because
-- the 802.1AR "no expiry" date 9999-12-31 does not fit in int64 nanoseconds.

CREATE TABLE stations (
    id           TEXT PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE TABLE operators (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE products (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE batches (
    id         TEXT PRIMARY KEY,
    product    TEXT NOT NULL REFERENCES products (id),
    work_order TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity >= 0),
    operator   TEXT NOT NULL REFERENCES operators (id),
    station    TEXT NOT NULL REFERENCES stations (id),
    state      TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    opened_at  BIGINT NOT NULL,
    closed_at  BIGINT
);

CREATE INDEX batches_opened ON batches (opened_at);

CREATE TABLE boards (
    id               {{ID}},
    serial           TEXT NOT NULL UNIQUE,
    ek_pub_sha256    TEXT UNIQUE,
    batch            TEXT NOT NULL REFERENCES batches (id),
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'provisioned', 'failed', 'stopped')),
    current_step     TEXT NOT NULL DEFAULT '',
    reason_code      TEXT NOT NULL DEFAULT '',
    reason_text      TEXT NOT NULL DEFAULT '',
    tpm_manufacturer TEXT NOT NULL DEFAULT '',
    tpm_vendor       TEXT NOT NULL DEFAULT '',
    tpm_firmware     TEXT NOT NULL DEFAULT '',
    ek_cert          {{BLOB}},
    ek_public        {{BLOB}},
    station          TEXT NOT NULL REFERENCES stations (id),
    slot             INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 1,
    rework_count     INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX boards_batch ON boards (batch, id);
CREATE INDEX boards_station_state ON boards (station, state);

CREATE TABLE keys (
    id         {{ID}},
    board_id   BIGINT NOT NULL REFERENCES boards (id),
    attempt    INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('iak', 'idevid')),
    public     {{BLOB}} NOT NULL,
    handle     BIGINT NOT NULL,
    name       {{BLOB}} NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (board_id, attempt, kind)
);

CREATE TABLE certificates (
    id         {{ID}},
    board_id   BIGINT NOT NULL REFERENCES boards (id),
    attempt    INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('iak', 'idevid')),
    der        {{BLOB}} NOT NULL,
    serial_hex TEXT NOT NULL,
    not_after  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (board_id, attempt, kind)
);

CREATE TABLE steps (
    id          {{ID}},
    board_id    BIGINT NOT NULL REFERENCES boards (id),
    attempt     INTEGER NOT NULL,
    step        TEXT NOT NULL,
    phase       TEXT NOT NULL CHECK (phase IN ('started', 'done', 'failed')),
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    duration_ns BIGINT NOT NULL DEFAULT 0,
    tpm_time_ns BIGINT NOT NULL DEFAULT 0,
    detail      TEXT NOT NULL DEFAULT ''
);

CREATE INDEX steps_board ON steps (board_id, id);

-- The audit trail. Rows are only ever inserted; hash covers every other column and prev_hash links each
-- row to the one before, so an edit, a removal or a reordering shows when the chain is walked.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    station     TEXT NOT NULL,
    batch       TEXT NOT NULL,
    serial      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE
);

CREATE INDEX events_batch ON events (batch, seq);
CREATE INDEX events_serial ON events (serial, seq);

-- One row: the last event's seq and hash. Appenders lock it (FOR UPDATE on PostgreSQL; SQLite has a single
-- writer) so seq and prev_hash are assigned in order across stations, and a truncated tail shows.
CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE ek_list_exports (
    id          {{ID}},
    batch       TEXT NOT NULL REFERENCES batches (id),
    format      TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    boards      INTEGER NOT NULL,
    station     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    pushed_at   BIGINT
);

CREATE INDEX ek_list_exports_batch ON ek_list_exports (batch, id);
