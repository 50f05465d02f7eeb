-- Witnessed audit chain heads: each station's signed checkpoints (provisioning.Checkpoint), kept so that
-- `station audit verify --ca` can check the station's local chain still holds every one. Rows are only
-- inserted. Times are Unix milliseconds (UTC). Keep in step with the other engine's file.

CREATE TABLE ca_witnessed_heads (
    station     TEXT    NOT NULL,
    seq         INTEGER  NOT NULL,
    hash        TEXT    NOT NULL,
    signed_at   INTEGER  NOT NULL,
    received_at INTEGER  NOT NULL,
    checkpoint  BLOB    NOT NULL,
    signature   BLOB    NOT NULL,
    PRIMARY KEY (station, seq)
);
