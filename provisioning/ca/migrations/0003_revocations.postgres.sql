-- Revoked certificates (issue 13): board certificates (kind iak/idevid, issued by the issuing CA, in the
-- CRL and OCSP) and station credentials (kind station, under the station access CA, refused at the TLS
-- handshake). serial_number is lowercase hex of the certificate serial, as in ca_certificates; reason is
-- the RFC 5280 section 5.3.1 CRLReason code.
CREATE TABLE ca_revocations (
    serial_number TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('iak', 'idevid', 'station')),
    board_serial  TEXT    NOT NULL DEFAULT '',
    subject       TEXT    NOT NULL DEFAULT '',
    reason        INTEGER NOT NULL CHECK (reason BETWEEN 0 AND 10 AND reason <> 7),
    revoked_at    BIGINT  NOT NULL
);
CREATE INDEX ca_revocations_kind ON ca_revocations (kind);
