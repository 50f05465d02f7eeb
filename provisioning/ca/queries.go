package ca

// Every statement the store runs. They are written once, with ? placeholders, in the SQL both engines share;
// the store Rebinds them ($1.. for PostgreSQL). The schema differs per engine and lives in migrations/*.sql.
const (
	qChallengeInsert = `INSERT INTO ca_challenges (id, station, serial, product, rework, ek_sha256, ek_cert, ek_public,
		iak_public, idevid_public, tpm_info, secret_sha256, nonce, created_at, expires_at, used)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, FALSE)`
	// PostgreSQL's form of qChallengeInsert commits without waiting for its WAL to reach the disk
	// (synchronous_commit off for this one statement's transaction, set_config(..., true) being SET LOCAL).
	// A session is not an issuance: one that a PostgreSQL crash loses within the WAL writer's delay
	// (wal_writer_delay, 200 ms by default) is answered challenge_unknown and the station starts round 1
	// again. Everything after it stays synchronous: the claim that burns a session and the completion that
	// records an issuance (which also flushes the WAL before it, this insert included) are durable when the
	// CA answers.
	qPGChallengeInsert = `WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
		INSERT INTO ca_challenges (id, station, serial, product, rework, ek_sha256, ek_cert, ek_public,
		iak_public, idevid_public, tpm_info, secret_sha256, nonce, created_at, expires_at, used)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, FALSE FROM async`
	qChallengeGet = `SELECT id, station, serial, product, rework, ek_sha256, ek_cert, ek_public, iak_public,
		idevid_public, tpm_info, secret_sha256, nonce, created_at, expires_at, used
		FROM ca_challenges WHERE id = ?`
	// The single-use guard: only the request whose UPDATE changes the row may go on comparing the secret.
	// Round 2's claim and load are one statement: only this station's unused, unexpired session is claimed
	// (expires_at > now in milliseconds is time.Time.Before on the stored value). Both engines have
	// UPDATE ... RETURNING (SQLite since 3.35).
	qChallengeClaimFor = `UPDATE ca_challenges SET used = TRUE, used_at = ?
		WHERE id = ? AND station = ? AND used = FALSE AND expires_at > ?
		RETURNING id, station, serial, product, rework, ek_sha256, ek_cert, ek_public, iak_public,
		idevid_public, tpm_info, secret_sha256, nonce, created_at, expires_at, used`
	// PostgreSQL's form of qChallengeClaimFor commits without waiting for the WAL flush, as
	// qPGChallengeInsert. The CA answers nothing on a claim alone: a right answer is answered after the
	// completion's synchronous commit, a wrong one after its refusal is logged (Activate), and either
	// commit flushes the claim before it, so a session is burnt on disk before any answer to it is sent.
	qPGChallengeClaimFor = `WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
		UPDATE ca_challenges SET used = TRUE, used_at = $1 FROM async
		WHERE id = $2 AND station = $3 AND used = FALSE AND expires_at > $4
		RETURNING id, station, serial, product, rework, ek_sha256, ek_cert, ek_public, iak_public,
		idevid_public, tpm_info, secret_sha256, nonce, created_at, expires_at, used`
	qHeadInsert = `INSERT INTO ca_witnessed_heads (station, seq, hash, signed_at, received_at, checkpoint, signature)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	// What the witness rule weighs a new head (station, seq) against: the hash at its seq and the highest
	// head above it signed before the rollback bound (Store.addHead's checkHead).
	qHeadConflict = `SELECT (SELECT hash FROM ca_witnessed_heads WHERE station = ? AND seq = ?) AS same_hash,
		a.seq AS ahead_seq, a.signed_at AS ahead_signed_at
		FROM (SELECT 1) one LEFT JOIN (SELECT seq, signed_at FROM ca_witnessed_heads WHERE station = ? AND seq > ? AND signed_at < ?
		ORDER BY seq DESC LIMIT 1) a ON TRUE`
	// PostgreSQL's form of the whole of an enrollment's head (Store.AddEnrollmentHead) in one statement:
	// qHeadConflict's two look-ups, and the insert only when neither finds anything; the caller applies the
	// rule to what they found when nothing was inserted. Two requests with the same seq at once: the
	// loser's insert fails on the primary key and it checks again (afterHead). The statement commits
	// without waiting for the WAL flush, as qPGChallengeInsert: nothing is issued on round 1, and round
	// 2's synchronous completion flushes this head before the enrollment's certificates are recorded, so
	// the CA never answers with a certificate whose enrollment's head a crash could lose. What a
	// PostgreSQL crash can lose is the newest heads of enrollments still in round 1 (within
	// wal_writer_delay), which leaves the witness that much behind, as if those requests had not come.
	// A head sent to /v1/witness stays synchronous: it is the whole request.
	qPGEnrollmentHead = `WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
		same AS (SELECT hash FROM ca_witnessed_heads WHERE station = $1 AND seq = $2),
		ahead AS (SELECT seq, signed_at FROM ca_witnessed_heads WHERE station = $1 AND seq > $2 AND signed_at < $8
			ORDER BY seq DESC LIMIT 1),
		ins AS (INSERT INTO ca_witnessed_heads (station, seq, hash, signed_at, received_at, checkpoint, signature)
			SELECT $1, $2, $3, $4, $5, $6, $7 FROM async
			WHERE NOT EXISTS (SELECT 1 FROM same) AND NOT EXISTS (SELECT 1 FROM ahead)
			RETURNING 1)
		SELECT (SELECT hash FROM same) AS same_hash, (SELECT seq FROM ahead) AS ahead_seq,
			(SELECT signed_at FROM ahead) AS ahead_signed_at, EXISTS (SELECT 1 FROM ins) AS inserted`
	// Used or expired challenges are kept a day for the record, then dropped.
	qChallengePurge = `DELETE FROM ca_challenges WHERE expires_at < ?`

	qEnrollmentByEK = `SELECT ek_sha256, serial, product, station, enrolled_at, updated_at, reworks, retired
		FROM ca_enrollments WHERE ek_sha256 = ?`
	// The EK/serial rule reads both enrollments it may involve in one statement: the EK's (live or retired)
	// and the serial's live one (possibly the same row).
	qEnrollmentBinding = `SELECT ek_sha256, serial, product, station, enrolled_at, updated_at, reworks, retired
		FROM ca_enrollments WHERE ek_sha256 = ? OR (serial = ? AND NOT retired)`
	// Round 1 reads the binding and the EK list entry together (src tells the rows apart).
	qEnrollState = `SELECT 'enrollment' AS src, ek_sha256, serial, product, station, enrolled_at, updated_at, reworks, retired
		FROM ca_enrollments WHERE ek_sha256 = ? OR (serial = ? AND NOT retired)
		UNION ALL
		SELECT 'ek_list' AS src, ek_sha256, serial, '', '', 0, 0, 0, FALSE FROM ca_ek_list_entries WHERE ek_sha256 = ?`
	qEnrollmentInsert = `INSERT INTO ca_enrollments (ek_sha256, serial, product, station, ek_cert, enrolled_at, updated_at,
		reworks, retired) VALUES (?, ?, ?, ?, ?, ?, ?, 0, FALSE)`
	qEnrollmentRework = `UPDATE ca_enrollments SET product = ?, station = ?, ek_cert = ?, updated_at = ?,
		reworks = reworks + 1, retired = FALSE WHERE ek_sha256 = ? AND serial = ?`
	qEnrollmentRetire = `UPDATE ca_enrollments SET retired = TRUE, updated_at = ? WHERE ek_sha256 = ?`

	qCertificateInsert = `INSERT INTO ca_certificates (serial_number, kind, board_serial, ek_sha256, session_id, station,
		der, not_before, not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qCertificatesByBoard = `SELECT serial_number, kind, board_serial, ek_sha256, session_id, station, der, not_before,
		not_after, issued_at FROM ca_certificates WHERE board_serial = ? ORDER BY issued_at, kind`

	qEKListGet = `SELECT ek_sha256, serial, batch, station, ek_cert, ek_public, tpm_manufacturer, tpm_model,
		tpm_firmware, imported_at FROM ca_ek_list_entries WHERE ek_sha256 = ?`
	qEKListInsert = `INSERT INTO ca_ek_list_entries (ek_sha256, serial, batch, station, ek_cert, ek_public,
		tpm_manufacturer, tpm_model, tpm_firmware, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	qEventInsert = `INSERT INTO ca_events (at, station, kind, serial, ek_sha256, session_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	// PostgreSQL only: a first enrollment with its two certificates and its event as one statement (one round
	// trip, atomic without BEGIN/COMMIT; data-modifying WITH clauses always run to completion). The unique
	// indexes on ca_enrollments are the EK/serial rule for a first enrollment: the primary key refuses an EK
	// enrolled before, ca_enrollments_serial_live a serial enrolled with another EK.
	qPGCompleteFirst = `WITH enr AS (
		INSERT INTO ca_enrollments (ek_sha256, serial, product, station, ek_cert, enrolled_at, updated_at, reworks, retired)
		VALUES ($1, $2, $3, $4, $5, $6, $6, 0, FALSE)),
	crt AS (
		INSERT INTO ca_certificates (serial_number, kind, board_serial, ek_sha256, session_id, station, der, not_before,
			not_after, issued_at)
		VALUES ($7, $8, $9, $10, $11, $12, $13, $14, $15, $16), ($17, $18, $19, $20, $21, $22, $23, $24, $25, $26))
	INSERT INTO ca_events (at, station, kind, serial, ek_sha256, session_id, detail) VALUES ($27, $28, $29, $30, $31, $32, $33)`
	qEventsRecent = `SELECT id, at, station, kind, serial, ek_sha256, session_id, detail FROM ca_events
		ORDER BY id DESC LIMIT ?`
)
