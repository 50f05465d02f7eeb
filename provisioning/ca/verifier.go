// Package ca is tpmline's reference upstream attestation CA: the verifier that decides whether a board's
// IAK and IDevID live in the TPM that owns a vendor-certified EK, the issuer of their certificates, the
// durable challenge/enrollment store (SQLite or PostgreSQL), the HTTPS server with mutual TLS that the
// stations talk to, and the upstream-ca command line. docs/protocol.md describes the protocol it serves.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/records"
)

// DefaultChallengeTTL is how long a round-1 challenge may be answered. A TPM needs well under a second for
// ActivateCredential and Certify with an ECC IAK (tpm-facts.md: ~70 ms ECDSA sign on the slowest chip).
const DefaultChallengeTTL = 60 * time.Second

const (
	secretBytes    = 32 // the credential secret: a SHA-256-sized TPM2B_DIGEST
	nonceBytes     = 32 // TPM2_Certify qualifyingData (TPM2B_DATA holds up to a digest of the largest hash)
	sessionIDBytes = 16
)

// Verifier is the CA side of the enrollment protocol.
type Verifier struct {
	Store      *Store
	Issuer     *Issuer
	EKVerifier *ekcert.Verifier // the configured TPM vendor roots
	// RequireEKList refuses EKs that no station has uploaded on an EK list.
	RequireEKList bool
	// RequireAuditHead refuses an enrollment that carries no signed audit chain head (EnrollmentHead);
	// left unset, a station built before heads rode with enrollments still enrolls.
	RequireAuditHead bool
	ChallengeTTL     time.Duration    // default DefaultChallengeTTL
	Now              func() time.Time // default time.Now
	Rand             io.Reader        // secrets, nonces, session IDs, MakeCredential seeds; default crypto/rand
	Log              *slog.Logger     // default: discard
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return clock.Now()
}

func (v *Verifier) rand() io.Reader {
	if v.Rand != nil {
		return v.Rand
	}
	return rand.Reader
}

func (v *Verifier) log() *slog.Logger {
	if v.Log != nil {
		return v.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (v *Verifier) ttl() time.Duration {
	if v.ChallengeTTL > 0 {
		return v.ChallengeTTL
	}
	return DefaultChallengeTTL
}

// internal logs err in full and returns a protocol error that says nothing about the CA's insides.
func (v *Verifier) internal(what string, err error) error {
	v.log().Error("internal error", "what", what, "err", err)
	return provisioning.Errorf(provisioning.CodeInternal, "CA failed %s; retry later or contact the CA operator", what)
}

// EKPublicSHA256 identifies an EK: tpmwire.KeyIdentity, SHA-256 over the DER SubjectPublicKeyInfo of its
// public key (RFC 5280 4.1.2.7), the identity the inventory, reports and EK lists show. Enrollments and EK
// lists are keyed by it.
func EKPublicSHA256(pub any) ([]byte, error) {
	sum, err := tpmwire.KeyIdentity(pub)
	if err != nil {
		return nil, err
	}
	return sum[:], nil
}

// Enroll runs round 1 for an authenticated station. The checks, in order; the first that fails decides the
// error code:
//
//  1. req.Version is provisioning.ProtocolVersion (unsupported_version).
//  2. Field bounds from wire.go: every field present, no field over its bound, at most MaxChainCerts chain
//     certificates (bad_request, too_large).
//  3. Serial: 1..MaxSerialLen characters of the X.520 PrintableString set (it becomes the certificates'
//     subject serialNumber, RFC 5280 Appendix A), no leading or trailing space. Product: 1..MaxProductLen
//     printable ASCII characters. TPM strings: printable ASCII, at most MaxTPMStringLen (bad_request).
//  4. The EK certificate normalises and parses (ek_cert_invalid), is not a CA and carries the EK EKU
//     2.23.133.8.1 (ek_not_ek), and chains to a configured TPM vendor root through the CA's intermediates
//     and the presented ek_chain (ek_untrusted): ekcert.Verifier.
//  5. ek_public is exactly one TPMT_PUBLIC (bad_request), a fixedTPM restricted decryption key, and holds the
//     certificate's key (ek_mismatch): ekcert.MatchPublicArea.
//     The TPM description derives the IAK certificate's TCG attributes and its manufacturer is the EK
//     certificate's where that names one (bad_request): CheckTPMInfo.
//  6. When RequireEKList is set, the EK is on an imported EK list (ek_not_listed); an EK listed under another
//     serial is refused whether or not lists are required (ek_serial_conflict).
//  7. The EK is not enrolled under another serial (never allowed); the same EK and serial enroll again only
//     with req.Rework; a serial enrolled with another EK moves only with req.Rework (ek_serial_conflict).
//     Reworks are logged.
//  8. iak_public is exactly one TPMT_PUBLIC (bad_request); restricted, sign, not decrypt, fixedTPM,
//     fixedParent, sensitiveDataOrigin (iak_attributes); RSA-2048 RSASSA/RSAPSS or ECC P-256/P-384 ECDSA
//     with SHA-256/384 and an explicit scheme, and the EK's name algorithm (iak_algorithm).
//  9. idevid_public is exactly one TPMT_PUBLIC (bad_request); fixedTPM, fixedParent, sensitiveDataOrigin,
//     sign, not restricted, not decrypt, approved algorithm (idevid_attributes).
//
// Then it makes the credential: TPM2_MakeCredential in software to the EK over the Name the CA computes
// from iak_public (never a Name the client sends), with a fresh 32-byte secret, and a fresh 32-byte nonce for
// TPM2_Certify; and it stores the session (the secret's SHA-256 only, the nonce, the submitted publics, the
// EK hash, serial, station, expiry Now+ChallengeTTL) before answering.
func (v *Verifier) Enroll(ctx context.Context, station string, req *provisioning.EnrollRequest) (*provisioning.Challenge, error) {
	en, err := v.checkEnroll(ctx, station, req)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceBytes)
	if _, err := io.ReadFull(v.rand(), nonce); err != nil {
		return nil, v.internal("drawing random bytes", err)
	}
	return v.challenge(ctx, station, req, en, nonce)
}

// enrollment is a round-1 request that passed Enroll's checks 1 to 9, parsed.
type enrollment struct {
	ekPub, iakPub, idevidPub *tpm2.TPMTPublic
	iakKey, idevidKey        *keyAlgorithm
	ek                       *ekcert.Certificate
	ekHash                   []byte
	log                      *slog.Logger
}

// checkEnroll runs Enroll's checks 1 to 9, the ones every enrollment input passes (the JSON request and the
// TCG-CSR-IDEVID alike).
func (v *Verifier) checkEnroll(ctx context.Context, station string, req *provisioning.EnrollRequest) (*enrollment, error) {
	if req == nil {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "empty request")
	}
	// 1.
	if req.Version != provisioning.ProtocolVersion {
		return nil, provisioning.Errorf(provisioning.CodeUnsupportedVersion, "protocol version %d is not supported; this CA speaks version %d", req.Version, provisioning.ProtocolVersion)
	}
	// 2, 3.
	if err := checkEnrollFields(req); err != nil {
		return nil, err
	}
	// 4.
	ek, err := v.verifyEKCert(req)
	if err != nil {
		return nil, err
	}
	// 5.
	ekPub, err := parsePublic("ek_public", req.EKPublic)
	if err != nil {
		return nil, err
	}
	if err := checkEKPublic(ekPub); err != nil {
		return nil, err
	}
	if err := ekcert.MatchPublicArea(ek.X509, req.EKPublic); err != nil {
		return nil, provisioning.Errorf(provisioning.CodeEKMismatch, "ek_public is not the key of the EK certificate")
	}
	// The IAK certificate names the TPM: refuse a description it could not carry or the EK certificate
	// contradicts (CheckTPMInfo lists the checks).
	if err := CheckTPMInfo(req.TPM, ek.X509); err != nil {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "board %q: %v", req.Serial, err)
	}
	ekHash, err := EKPublicSHA256(ek.X509.PublicKey)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeEKCertInvalid, "EK certificate key cannot be encoded: %v", err)
	}
	log := v.log().With("station", station, "serial", req.Serial, "ek_sha256", hex.EncodeToString(ekHash))
	// 6. (The EK list entry and the enrollments of 7 are read together.)
	state, err := v.Store.EnrollState(ctx, ekHash, req.Serial)
	switch {
	case err != nil:
		return nil, v.internal("looking up the EK list and enrollments", err)
	case !state.Listed:
		if v.RequireEKList {
			return nil, provisioning.Errorf(provisioning.CodeEKNotListed, "EK of board %q is on no EK list this CA imported; upload the batch's EK list first", req.Serial)
		}
	case state.ListedSerial != req.Serial:
		return nil, provisioning.Errorf(provisioning.CodeEKSerialConflict, "EK of board %q is listed under another serial", req.Serial)
	}
	// 7.
	if err := state.Binding(ekHash, req.Serial, req.Rework); err != nil {
		if !errors.Is(err, ErrAlreadyEnrolled) || !v.resumable(ctx, ekHash, req) {
			return nil, v.bindingError(req.Serial, err)
		}
		log.Info("resuming an enrollment: same EK, serial and keys; the proof is asked again and the issued certificates returned")
	}
	if req.Rework {
		log.Warn("rework enrollment requested")
	}
	// 8.
	iakPub, err := parsePublic("iak_public", req.IAKPublic)
	if err != nil {
		return nil, err
	}
	iakKey, err := checkIAK(iakPub, req.IAKPublic, ekPub)
	if err != nil {
		return nil, err
	}
	// 9.
	idevidPub, err := parsePublic("idevid_public", req.IDevIDPublic)
	if err != nil {
		return nil, err
	}
	idevidKey, err := checkIDevID(idevidPub, req.IDevIDPublic)
	if err != nil {
		return nil, err
	}
	return &enrollment{ekPub: ekPub, iakPub: iakPub, idevidPub: idevidPub, iakKey: iakKey, idevidKey: idevidKey,
		ek: ek, ekHash: ekHash, log: log}, nil
}

// challenge makes and stores the credential for a checked enrollment; nonce is what round 2's
// certify_info must carry in extraData.
func (v *Verifier) challenge(ctx context.Context, station string, req *provisioning.EnrollRequest, en *enrollment, nonce []byte) (*provisioning.Challenge, error) {
	name, err := objectName(en.iakPub, req.IAKPublic)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeIAKAlgorithm, "IAK: %v", err)
	}
	secret, id := make([]byte, secretBytes), make([]byte, sessionIDBytes)
	for _, b := range [][]byte{secret, id} {
		if _, err := io.ReadFull(v.rand(), b); err != nil {
			return nil, v.internal("drawing random bytes", err)
		}
	}
	encKey, err := tpm2.ImportEncapsulationKey(en.ekPub)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeEKMismatch, "EK public cannot receive a credential")
	}
	blob, encSecret, err := tpm2.CreateCredential(v.rand(), encKey, name, secret)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeEKMismatch, "EK public cannot receive a credential")
	}
	tpmInfo, err := json.Marshal(req.TPM)
	if err != nil {
		return nil, v.internal("encoding TPM info", err)
	}
	secretHash := sha256.Sum256(secret)
	now := v.now().UTC()
	rec := &ChallengeRecord{
		ID: hex.EncodeToString(id), Station: station, Serial: req.Serial, Product: req.Product, Rework: req.Rework,
		EKSHA256: en.ekHash, EKCert: en.ek.DER, EKPublic: req.EKPublic, IAKPublic: req.IAKPublic,
		IDevIDPublic: req.IDevIDPublic, TPMInfo: string(tpmInfo), SecretSHA256: secretHash[:], Nonce: nonce,
		CreatedAt: now, ExpiresAt: now.Add(v.ttl()),
	}
	if err := v.Store.CreateChallenge(ctx, rec); err != nil {
		return nil, v.internal("storing the challenge", err)
	}
	en.log.Info("challenge issued", "session", rec.ID, "expires", rec.ExpiresAt)
	return &provisioning.Challenge{
		SessionID:       rec.ID,
		CredentialBlob:  blob,
		EncryptedSecret: encSecret,
		Nonce:           nonce,
		ExpiresAt:       rec.ExpiresAt,
	}, nil
}

func (v *Verifier) verifyEKCert(req *provisioning.EnrollRequest) (*ekcert.Certificate, error) {
	ek, err := ekcert.Parse(req.EKCert)
	if err != nil {
		return nil, ekError(err)
	}
	presented := make([]*x509.Certificate, 0, len(req.EKChain))
	for i, raw := range req.EKChain {
		der, _, err := ekcert.Normalise(raw)
		if err != nil {
			return nil, provisioning.Errorf(provisioning.CodeEKCertInvalid, "ek_chain[%d]: %v", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, provisioning.Errorf(provisioning.CodeEKCertInvalid, "ek_chain[%d] is not a certificate: %v", i, err)
		}
		presented = append(presented, c)
	}
	ekv := v.EKVerifier
	if ekv == nil {
		ekv = &ekcert.Verifier{}
	}
	now := v.now
	if ekv.Now != nil {
		now = ekv.Now
	}
	if _, err := ekv.VerifyAt(ek, presented, now()); err != nil {
		return nil, ekError(err)
	}
	return ek, nil
}

// ekError maps ekcert's sentinels to protocol codes. ekcert's messages describe the submitted certificate
// only, so they are passed on.
func ekError(err error) error {
	switch {
	case errors.Is(err, ekcert.ErrNotEK):
		return provisioning.Errorf(provisioning.CodeEKNotEK, "%v", err)
	case errors.Is(err, ekcert.ErrUntrusted):
		return provisioning.Errorf(provisioning.CodeEKUntrusted, "%v", err)
	case errors.Is(err, ekcert.ErrMismatch):
		return provisioning.Errorf(provisioning.CodeEKMismatch, "ek_public is not the key of the EK certificate")
	default:
		return provisioning.Errorf(provisioning.CodeEKCertInvalid, "%v", err)
	}
}

// unclaimable tells why station's session id could not be claimed, in the order of Activate's checks 3 to 5.
func (v *Verifier) unclaimable(ctx context.Context, station, id string, now time.Time) error {
	ch, err := v.Store.Challenge(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound) || (err == nil && ch.Station != station):
		return provisioning.Errorf(provisioning.CodeChallengeUnknown, "no session %q for this station; start again with round 1", id)
	case err != nil:
		return v.internal("loading the session", err)
	}
	noteSerial(ctx, ch.Serial)
	switch {
	case !now.Before(ch.ExpiresAt):
		return provisioning.Errorf(provisioning.CodeChallengeExpired, "session %q expired at %s; start again with round 1", ch.ID, ch.ExpiresAt.Format(time.RFC3339))
	case ch.Used:
		return provisioning.Errorf(provisioning.CodeChallengeUsed, "session %q was already answered; start again with round 1", ch.ID)
	default:
		return v.internal("claiming the session", errors.New("an unused, unexpired session could not be claimed"))
	}
}

func (v *Verifier) bindingError(serial string, err error) error {
	switch {
	case errors.Is(err, ErrEKOtherSerial):
		return provisioning.Errorf(provisioning.CodeEKSerialConflict, "EK of board %q is already enrolled under another serial (cloned or swapped TPM?)", serial)
	case errors.Is(err, ErrAlreadyEnrolled):
		return provisioning.Errorf(provisioning.CodeEKSerialConflict, "board %q is already enrolled with this EK; enroll again only as a rework", serial)
	case errors.Is(err, ErrSerialOtherEK):
		return provisioning.Errorf(provisioning.CodeEKSerialConflict, "board %q is enrolled with another EK; a TPM replacement needs a rework", serial)
	default:
		return v.internal("checking the EK binding", err)
	}
}

// Activate runs round 2 for an authenticated station. The checks, in order:
//
//  1. req.Version is provisioning.ProtocolVersion (unsupported_version).
//  2. Field bounds: session_id 1..MaxSessionIDLen lower-case hex; secret 1..MaxSecretBytes; certify_info
//     and certify_signature present and within MaxAttestBytes / MaxSigBytes (bad_request, too_large).
//  3. The session exists and was opened by this station (challenge_unknown; another station's session is
//     reported as unknown and left untouched).
//  4. It has not expired: Now is before its expiry (challenge_expired).
//  5. It is claimed atomically before anything else is compared (challenge_used if it was already claimed):
//     every answer, right or wrong, burns the session, so a wrong secret cannot be retried and a replay of a
//     right one gets challenge_used. An answer refused after the claim is logged (event answer_refused,
//     with its code) before the refusal is sent; that commit is also what makes the claim durable on
//     PostgreSQL (Store.ClaimChallengeFor).
//  6. SHA-256 of the secret equals the stored SHA-256, compared in constant time (activation_failed).
//  7. certify_info is exactly one TPMS_ATTEST with the TPM_GENERATED magic and type TPM_ST_ATTEST_CERTIFY
//     (attest_invalid); its extraData is this session's nonce (attest_nonce); its attested Name is the Name
//     of the submitted idevid_public (attest_name).
//  8. certify_signature is exactly one TPMT_SIGNATURE with the IAK's scheme and hash, and verifies over
//     certify_info under the IAK public of round 1 (attest_signature).
//
// Then it issues the IAK and IDevID certificates and records, atomically, the enrollment (the EK/serial rule
// of round 1 is applied again: ek_serial_conflict if another station won a race), the certificates and the
// events. A board enrolled before under this EK and serial that proves exactly the certified keys again (a
// station resuming after a crash) gets the certificates issued before instead, never a second set.
func (v *Verifier) Activate(ctx context.Context, station string, req *provisioning.ActivateRequest) (*provisioning.Certificates, error) {
	if req == nil {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "empty request")
	}
	// 1.
	if req.Version != provisioning.ProtocolVersion {
		return nil, provisioning.Errorf(provisioning.CodeUnsupportedVersion, "protocol version %d is not supported; this CA speaks version %d", req.Version, provisioning.ProtocolVersion)
	}
	// 2.
	if err := checkActivateFields(req); err != nil {
		return nil, err
	}
	// 3, 4, 5: the happy path claims and loads in one statement; a session it cannot claim is looked at
	// to tell which check refused it.
	now := v.now().UTC()
	ch, err := v.Store.ClaimChallengeFor(ctx, req.SessionID, station, now)
	if errors.Is(err, ErrNotClaimable) {
		return nil, v.unclaimable(ctx, station, req.SessionID, now)
	}
	if err != nil {
		return nil, v.internal("claiming the session", err)
	}
	noteSerial(ctx, ch.Serial)
	log := v.log().With("station", station, "serial", ch.Serial, "session", ch.ID)
	certs, err := v.activateClaimed(ctx, station, req, ch, now, log)
	if err != nil {
		// The refusal is logged, synchronously committed, before it is answered: that commit also flushes
		// the claim (which on PostgreSQL did not wait for the disk), so the burnt session stays burnt
		// whatever crashes next.
		detail := err.Error()
		var pe *provisioning.Error
		if errors.As(err, &pe) {
			detail = string(pe.Code) + ": " + pe.Message
		}
		if lerr := v.Store.LogEvent(ctx, Event{At: now, Station: station, Kind: "answer_refused", Serial: ch.Serial,
			EKSHA256: ch.EKSHA256, SessionID: ch.ID, Detail: detail}); lerr != nil {
			return nil, v.internal("recording the refused answer", lerr)
		}
		return nil, err
	}
	return certs, nil
}

// activateClaimed runs Activate's checks 6 to 8 on a claimed session, then issues and records.
func (v *Verifier) activateClaimed(ctx context.Context, station string, req *provisioning.ActivateRequest, ch *ChallengeRecord, now time.Time, log *slog.Logger) (*provisioning.Certificates, error) {
	// 6.
	got := sha256.Sum256(req.Secret)
	if subtle.ConstantTimeCompare(got[:], ch.SecretSHA256) != 1 {
		log.Warn("wrong credential secret; session burnt")
		return nil, provisioning.Errorf(provisioning.CodeActivationFailed, "the secret is not the one sealed to this EK and IAK; the session is burnt, start again with round 1")
	}
	// The stored publics passed round 1's strict checks; they are the CA's own records.
	ekPub, err := parseStored(ch.EKPublic)
	if err != nil {
		return nil, v.internal("reading the stored EK public", err)
	}
	iakPub, err := parseStored(ch.IAKPublic)
	if err != nil {
		return nil, v.internal("reading the stored IAK public", err)
	}
	iakKey, err := checkIAK(iakPub, ch.IAKPublic, ekPub)
	if err != nil {
		return nil, v.internal("checking the stored IAK public", err)
	}
	idevidPub, err := parseStored(ch.IDevIDPublic)
	if err != nil {
		return nil, v.internal("reading the stored IDevID public", err)
	}
	idevidKey, err := checkIDevID(idevidPub, ch.IDevIDPublic)
	if err != nil {
		return nil, v.internal("checking the stored IDevID public", err)
	}
	idevidName, err := objectName(idevidPub, ch.IDevIDPublic)
	if err != nil {
		return nil, v.internal("computing the IDevID Name", err)
	}
	// 7.
	ev, err := parseCertify(req.CertifyInfo)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(ev.Attest.ExtraData.Buffer, ch.Nonce) != 1 {
		return nil, provisioning.Errorf(provisioning.CodeAttestNonce, "certify_info extraData is not this session's nonce")
	}
	if !bytes.Equal(ev.Name, idevidName) {
		return nil, provisioning.Errorf(provisioning.CodeAttestName, "certify_info attests another key than the submitted IDevID")
	}
	// 8.
	sig, err := parseSignature(req.CertifySignature)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(iakKey, req.CertifyInfo, sig); err != nil {
		return nil, err
	}

	// Issue.
	board := Board{Serial: ch.Serial, Product: ch.Product}
	if err := json.Unmarshal([]byte(ch.TPMInfo), &board.TPM); err != nil {
		return nil, v.internal("reading the stored TPM info", err)
	}
	iakDER, err := v.Issuer.IssueIAK(iakKey.Public, board)
	if err != nil {
		return nil, v.internal("issuing the IAK certificate", err)
	}
	idevidDER, err := v.Issuer.IssueIDevID(idevidKey.Public, board)
	if err != nil {
		return nil, v.internal("issuing the IDevID certificate", err)
	}
	c := &Completion{
		EKSHA256: ch.EKSHA256, EKCert: ch.EKCert, Serial: ch.Serial, Product: ch.Product, Station: station,
		Rework: ch.Rework, At: now, SessionID: ch.ID,
	}
	for _, ic := range []struct {
		kind string
		der  []byte
	}{{"iak", iakDER}, {"idevid", idevidDER}} {
		cert, err := x509.ParseCertificate(ic.der)
		if err != nil {
			return nil, v.internal("reading back an issued certificate", err)
		}
		c.Certs = append(c.Certs, IssuedCert{
			SerialNumber: hex.EncodeToString(cert.SerialNumber.Bytes()), Kind: ic.kind, BoardSerial: ch.Serial,
			EKSHA256: ch.EKSHA256, SessionID: ch.ID, Station: station, DER: ic.der,
			NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IssuedAt: now,
		})
	}
	kind, detail := "enrolled", "IAK and IDevID certificates issued"
	if ch.Rework {
		kind, detail = "rework", "re-enrolled as a rework; IAK and IDevID certificates issued"
	}
	c.Events = []Event{{At: now, Station: station, Kind: kind, Serial: ch.Serial, EKSHA256: ch.EKSHA256, SessionID: ch.ID, Detail: detail}}
	if err := v.Store.CompleteEnrollment(ctx, c); err != nil {
		// A resumed enrollment (the station crashed between our answer and its record) gets the certificates
		// already issued for these very keys, never a second set: one EK, one live certificate pair. Such a
		// board is enrolled already, so the write above refused it (and wrote nothing); the two certificates
		// just signed are dropped. Resuming is rare: the common first enrollment does not pay for the look-up.
		if errors.Is(err, ErrAlreadyEnrolled) && !ch.Rework {
			prev, perr := v.issuedFor(ctx, ch.EKSHA256, ch.Serial, iakKey.Public, idevidKey.Public)
			if perr != nil {
				return nil, v.internal("looking up issued certificates", perr)
			}
			if prev != nil {
				if err := v.Store.LogEvent(ctx, Event{At: now, Station: station, Kind: "resumed", Serial: ch.Serial, EKSHA256: ch.EKSHA256,
					SessionID: ch.ID, Detail: "proof repeated; the certificates issued before were returned"}); err != nil {
					return nil, v.internal("logging the resumed enrollment", err)
				}
				return prev, nil
			}
		}
		if errors.Is(err, ErrEKOtherSerial) || errors.Is(err, ErrAlreadyEnrolled) || errors.Is(err, ErrSerialOtherEK) {
			return nil, v.bindingError(ch.Serial, err)
		}
		return nil, v.internal("recording the enrollment", err)
	}
	log.Info(kind, "iak_cert", c.Certs[0].SerialNumber, "idevid_cert", c.Certs[1].SerialNumber)
	return &provisioning.Certificates{IAKCert: iakDER, IDevIDCert: idevidDER, Chain: v.Issuer.Chain()}, nil
}

// Field syntax.

// CheckSerial enforces the board serial syntax (see Enroll, check 3): records.CheckSerial, the one rule.
func CheckSerial(s string) error { return records.CheckSerial(s) }

// checkText allows printable ASCII (0x20..0x7e) up to max bytes.
func checkText(field, s string, max int, required bool) error {
	if s == "" && required {
		return provisioning.Errorf(provisioning.CodeBadRequest, "%s is missing", field)
	}
	if len(s) > max {
		return provisioning.Errorf(provisioning.CodeTooLarge, "%s is %d bytes, over the %d-byte bound", field, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return provisioning.Errorf(provisioning.CodeBadRequest, "%s has a non-printable or non-ASCII byte at offset %d", field, i)
		}
	}
	return nil
}

func checkBytes(field string, b []byte, max int) error {
	if len(b) == 0 {
		return provisioning.Errorf(provisioning.CodeBadRequest, "%s is missing", field)
	}
	if len(b) > max {
		return provisioning.Errorf(provisioning.CodeTooLarge, "%s is %d bytes, over the %d-byte bound", field, len(b), max)
	}
	return nil
}

func checkEnrollFields(req *provisioning.EnrollRequest) error {
	if len(req.Serial) > provisioning.MaxSerialLen {
		return provisioning.Errorf(provisioning.CodeTooLarge, "serial is %d bytes, over the %d-byte bound", len(req.Serial), provisioning.MaxSerialLen)
	}
	if err := CheckSerial(req.Serial); err != nil {
		return provisioning.Errorf(provisioning.CodeBadRequest, "%v", err)
	}
	if err := checkText("product", req.Product, provisioning.MaxProductLen, true); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"tpm.manufacturer", req.TPM.Manufacturer}, {"tpm.vendor_string", req.TPM.VendorString},
		{"tpm.firmware", req.TPM.Firmware}, {"tpm.model", req.TPM.Model},
	} {
		if err := checkText(f.name, f.v, provisioning.MaxTPMStringLen, false); err != nil {
			return err
		}
	}
	if err := checkBytes("ek_cert", req.EKCert, provisioning.MaxCertBytes); err != nil {
		return err
	}
	if len(req.EKChain) > provisioning.MaxChainCerts {
		return provisioning.Errorf(provisioning.CodeTooLarge, "ek_chain has %d certificates, over the bound of %d", len(req.EKChain), provisioning.MaxChainCerts)
	}
	for i, c := range req.EKChain {
		if err := checkBytes(fmt.Sprintf("ek_chain[%d]", i), c, provisioning.MaxCertBytes); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ek_public", req.EKPublic}, {"iak_public", req.IAKPublic}, {"idevid_public", req.IDevIDPublic}} {
		if err := checkBytes(f.name, f.b, provisioning.MaxPublicBytes); err != nil {
			return err
		}
	}
	return nil
}

func checkActivateFields(req *provisioning.ActivateRequest) error {
	if req.SessionID == "" {
		return provisioning.Errorf(provisioning.CodeBadRequest, "session_id is missing")
	}
	if len(req.SessionID) > provisioning.MaxSessionIDLen {
		return provisioning.Errorf(provisioning.CodeTooLarge, "session_id is %d bytes, over the %d-byte bound", len(req.SessionID), provisioning.MaxSessionIDLen)
	}
	for i := 0; i < len(req.SessionID); i++ {
		if c := req.SessionID[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return provisioning.Errorf(provisioning.CodeBadRequest, "session_id has a non-hex character at offset %d", i)
		}
	}
	if err := checkBytes("secret", req.Secret, provisioning.MaxSecretBytes); err != nil {
		return err
	}
	if err := checkBytes("certify_info", req.CertifyInfo, provisioning.MaxAttestBytes); err != nil {
		return err
	}
	return checkBytes("certify_signature", req.CertifySignature, provisioning.MaxSigBytes)
}

// resumable reports whether an already enrolled EK+serial asks again with exactly the keys it was
// certified for (IAK and IDevID are deterministic primaries, so a station resuming after a crash presents
// the same keys). Anything else still needs an explicit rework.
func (v *Verifier) resumable(ctx context.Context, ekHash []byte, req *provisioning.EnrollRequest) bool {
	if _, err := parsePublic("iak_public", req.IAKPublic); err != nil {
		return false
	}
	if _, err := parsePublic("idevid_public", req.IDevIDPublic); err != nil {
		return false
	}
	iak, err := publicKey(req.IAKPublic)
	if err != nil {
		return false
	}
	idevid, err := publicKey(req.IDevIDPublic)
	if err != nil {
		return false
	}
	prev, err := v.issuedFor(ctx, ekHash, req.Serial, iak, idevid)
	return err == nil && prev != nil
}

// issuedFor returns the latest certificates issued to serial under ekHash if they certify exactly iak
// and idevid, or nil.
func (v *Verifier) issuedFor(ctx context.Context, ekHash []byte, serial string, iak, idevid crypto.PublicKey) (*provisioning.Certificates, error) {
	certs, err := v.Store.CertificatesByBoard(ctx, serial)
	if err != nil {
		return nil, err
	}
	var iakDER, idevidDER []byte
	for _, c := range certs { // oldest first: the last of each kind wins
		if !bytes.Equal(c.EKSHA256, ekHash) {
			continue
		}
		switch c.Kind {
		case "iak":
			iakDER = c.DER
		case "idevid":
			idevidDER = c.DER
		}
	}
	if iakDER == nil || idevidDER == nil || !certifies(iakDER, iak) || !certifies(idevidDER, idevid) {
		return nil, nil
	}
	return &provisioning.Certificates{IAKCert: iakDER, IDevIDCert: idevidDER, Chain: v.Issuer.Chain()}, nil
}

func certifies(der []byte, pub crypto.PublicKey) bool {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}
