-- The EK identity becomes SHA-256 of the EK's DER SubjectPublicKeyInfo (what
-- `openssl pkey -pubin -outform DER | sha256sum` prints), the value EK lists and reports carry; it was
-- SHA-256 of the TPMT_PUBLIC bytes. A board whose EK public area is stored gets its new identity from
-- those bytes in Go, in this migration's transaction (ekidentity.go). A board claimed but stopped before
-- its EK was recorded has nothing to derive it from: its identity is cleared, and its next claim, which
-- every resume and rework makes, binds the EK the TPM presents then.
UPDATE boards SET ek_pub_sha256 = NULL WHERE ek_public IS NULL;
