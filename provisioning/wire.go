// Package provisioning owns the enrollment protocol, both ends: the device-side TPM operations that run over
// go-tpm's transport.TPM, the wire messages defined here, the HTTPS client the station uses, and (in the ca
// subpackage) the verifier and issuer that the upstream CA runs. docs/protocol.md is the prose version of
// this file; keep them in step.
//
// Each protocol rule has one implementation, which the station, the CA and the reports share:
//   - strict, bounded, panic-safe decoding of TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE: DecodePublic,
//     DecodeAttest, DecodeSignature (decode.go, with the direct decoders of decode_fast.go);
//   - a public area to a checked Go key, and the EK identity (SHA-256 of the DER SubjectPublicKeyInfo):
//     internal/tpmwire (PublicKey, KeyIdentity, EKIdentity), free of go-tpm so the inventory can use it;
//   - an EK certificate's encodings (NV headers, padding, OCTET STRING wrapper) and its public key:
//     ekcert.Normalise and ekcert.PublicKey;
//   - the board serial syntax: records.CheckSerial.
package provisioning

import (
	"fmt"
	"time"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/records"
)

// ProtocolVersion is carried in every request; the CA refuses versions it does not speak.
const ProtocolVersion = 1

// API paths. Both are POST with a JSON body over HTTPS with mutual TLS.
const (
	PathEnroll   = "/v1/enroll"   // round 1: evidence in, credential challenge out
	PathActivate = "/v1/activate" // round 2: proof in, certificates out
	PathEKLists  = "/v1/ek-lists" // signed EK list upload
	// PathEnrollTCGCSR is round 1 with a TCG-CSR-IDEVID as the evidence; round 2 is PathActivate.
	PathEnrollTCGCSR = "/v1/enroll/tcg-csr"
)

// MaxRequestBytes bounds every request body the CA reads. An enrollment carries at most a few EK
// certificates (NV_INDEX_MAX is 2048 bytes on most TPMs; a chain of 8 fits comfortably) and three public
// areas of a few hundred bytes; base64 and JSON add a third.
const MaxRequestBytes = 64 << 10

// MaxTCGCSRRequestBytes bounds a TCG-CSR-IDEVID enrollment body: a CSR of up to tcgcsr.MaxBytes (96 KiB,
// a boot event log included) in base64, and the fields of an enrollment.
const MaxTCGCSRRequestBytes = 192 << 10

// MaxEKListRequestBytes bounds an EK list upload body. It is larger than MaxRequestBytes (an
// enrollment) because a list carries a whole batch: an entry with an RSA EK certificate is ~2.5 KiB of JSON,
// so one upload holds ~12,000 boards; larger batches upload in several parts under the same batch name.
const MaxEKListRequestBytes = 32 << 20

// Bounds on individual fields, checked by the CA before any parsing.
const (
	MaxCertBytes     = 4096 // one DER certificate as read from NV, padding included
	MaxChainCerts    = 8
	MaxPublicBytes   = tpmwire.MaxPublicBytes // a marshalled TPMT_PUBLIC (RSA-4096 is ~600 bytes)
	MaxAttestBytes   = 1024                   // a marshalled TPMS_ATTEST
	MaxSigBytes      = 1024                   // a marshalled TPMT_SIGNATURE
	MaxSerialLen     = records.MaxSerialLen
	MaxProductLen    = 64
	MaxTPMStringLen  = 64
	MaxSecretBytes   = 64
	MaxSessionIDLen  = 64
	MaxEKListEntries = 1_000_000
)

// TPMInfo is what the device reports about its TPM (TPM2_GetCapability, TPM_PT_* properties).
type TPMInfo struct {
	Manufacturer string `json:"manufacturer"` // TPM_PT_MANUFACTURER as 4 ASCII characters, e.g. "IFX", "STM", "IBM"
	VendorString string `json:"vendor_string"`
	Firmware     string `json:"firmware"` // TPM_PT_FIRMWARE_VERSION_1/2 as "major.minor.build.patch"
	Model        string `json:"model,omitempty"`

	// ManufacturerID is TPM_PT_MANUFACTURER itself: the IAK certificate's tcg-at-tpmManufacturer is its hex,
	// which the trimmed text above cannot always give back ("STM " is 0x53544D20).
	ManufacturerID uint32 `json:"manufacturer_id,omitempty"`
}

// EnrollRequest is round 1. Binary fields are base64 in JSON (Go's []byte encoding).
type EnrollRequest struct {
	Version int    `json:"version"`
	Serial  string `json:"serial"`
	Product string `json:"product"`
	// Rework asks the CA to re-enroll an EK it already enrolled under this same serial. The CA logs it.
	// It never allows an EK to move to another serial.
	Rework bool `json:"rework,omitempty"`
	// EKCert is the EK certificate exactly as read from the TPM's NV index (the CA normalises it).
	EKCert []byte `json:"ek_cert"`
	// EKChain holds intermediate certificates read from the TPM's chain NV range, if any.
	EKChain [][]byte `json:"ek_chain,omitempty"`
	// EKPublic, IAKPublic and IDevIDPublic are marshalled TPMT_PUBLIC structures (the contents of a
	// TPM2B_PUBLIC, without its size prefix).
	EKPublic     []byte  `json:"ek_public"`
	IAKPublic    []byte  `json:"iak_public"`
	IDevIDPublic []byte  `json:"idevid_public"`
	TPM          TPMInfo `json:"tpm"`
	// AuditHead is the station's audit chain head when it sent this request, signed with the key of its
	// client certificate: the CA witnesses it as it does a POST PathWitness (docs/protocol.md, "Witness"),
	// so every enrollment anchors the station's chain outside its database. Stations built before it
	// leave it out.
	AuditHead *WitnessRequest `json:"audit_head,omitempty"`
}

// TCGCSREnrollRequest is round 1 with a TCG-CSR-IDEVID (provisioning/tcgcsr): the CSR carries the serial,
// product, EK certificate, IAK and IDevID publics and the IDevID's TPM2_Certify by the IAK; the request adds
// what the CSR has no field for and the JSON flow's round 1 carries. Round 2 is an ActivateRequest whose
// certify_info and certify_signature are the CSR's sgnCertifyInfo and sgnCertifyInfoSignature.
type TCGCSREnrollRequest struct {
	Version int    `json:"version"`
	CSR     []byte `json:"csr"` // a TCG_CSR_IDEVID
	Rework  bool   `json:"rework,omitempty"`
	// EKPublic is the EK's TPMT_PUBLIC: the credential needs the EK's template (name algorithm, symmetric
	// algorithm), which its certificate does not carry.
	EKPublic []byte   `json:"ek_public"`
	EKChain  [][]byte `json:"ek_chain,omitempty"`
	TPM      TPMInfo  `json:"tpm"`
}

// Challenge is the CA's answer to round 1.
type Challenge struct {
	SessionID string `json:"session_id"`
	// CredentialBlob and EncryptedSecret are TPM2_MakeCredential's outputs (the contents of a TPM2B_ID_OBJECT
	// and of a TPM2B_ENCRYPTED_SECRET), made over the Name the CA computed from IAKPublic.
	CredentialBlob  []byte `json:"credential_blob"`
	EncryptedSecret []byte `json:"encrypted_secret"`
	// Nonce is the qualifying data the device must put in TPM2_Certify's extraData.
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ActivateRequest is round 2.
type ActivateRequest struct {
	Version   int    `json:"version"`
	SessionID string `json:"session_id"`
	// Secret is what TPM2_ActivateCredential returned.
	Secret []byte `json:"secret"`
	// CertifyInfo is the marshalled TPMS_ATTEST from TPM2_Certify (IDevID certified by IAK);
	// CertifySignature the marshalled TPMT_SIGNATURE over it.
	CertifyInfo      []byte `json:"certify_info"`
	CertifySignature []byte `json:"certify_signature"`
}

// Certificates is the CA's answer to round 2: DER certificates.
type Certificates struct {
	IAKCert    []byte `json:"iak_cert"`
	IDevIDCert []byte `json:"idevid_cert"`
	// Chain is the issuing CA certificate, the OEM intermediates between it and the root (if any), and the root.
	Chain [][]byte `json:"chain"`
}

// ErrorCode names why the CA refused a request. Codes are stable; messages are for people.
type ErrorCode string

// Error codes. docs/protocol.md lists them with their HTTP status.
const (
	CodeBadRequest         ErrorCode = "bad_request"         // 400 malformed JSON, unknown field, bad base64, missing field
	CodeUnsupportedVersion ErrorCode = "unsupported_version" // 400
	CodeTooLarge           ErrorCode = "too_large"           // 413 body or field over its bound
	CodeUnauthenticated    ErrorCode = "unauthenticated"     // 401 no or untrusted client certificate
	CodeEKCertInvalid      ErrorCode = "ek_cert_invalid"     // 422 unparseable EK certificate, unknown encoding
	CodeEKUntrusted        ErrorCode = "ek_untrusted"        // 422 no chain to a configured vendor root
	CodeEKNotEK            ErrorCode = "ek_not_ek"           // 422 missing EK EKU 2.23.133.8.1, or a CA certificate
	CodeEKMismatch         ErrorCode = "ek_mismatch"         // 422 EK public differs from the certificate's key
	CodeEKNotListed        ErrorCode = "ek_not_listed"       // 403 CA requires an EK list and this EK is not on it
	CodeEKSerialConflict   ErrorCode = "ek_serial_conflict"  // 409 EK enrolled under another serial, or re-enrollment without rework
	CodeIAKAttributes      ErrorCode = "iak_attributes"      // 422 IAK not restricted/sign/fixedTPM/fixedParent/sensitiveDataOrigin
	CodeIAKAlgorithm       ErrorCode = "iak_algorithm"       // 422 unapproved algorithm or name algorithm differs from the EK's
	CodeIDevIDAttributes   ErrorCode = "idevid_attributes"   // 422 IDevID not fixedTPM/sensitiveDataOrigin/sign, or restricted
	CodeChallengeUnknown   ErrorCode = "challenge_unknown"   // 404 no such session
	CodeChallengeExpired   ErrorCode = "challenge_expired"   // 410
	CodeChallengeUsed      ErrorCode = "challenge_used"      // 410 already answered (right or wrong)
	CodeActivationFailed   ErrorCode = "activation_failed"   // 403 wrong secret; the challenge is burnt
	CodeAttestInvalid      ErrorCode = "attest_invalid"      // 422 unparseable, bad magic, not ATTEST_CERTIFY
	CodeAttestNonce        ErrorCode = "attest_nonce"        // 422 extraData is not this session's nonce
	CodeAttestName         ErrorCode = "attest_name"         // 422 attested Name is not the submitted IDevID's
	CodeAttestSignature    ErrorCode = "attest_signature"    // 422 signature does not verify under the IAK
	CodeEKListInvalid      ErrorCode = "ek_list_invalid"     // 422 EK list malformed or its signature does not verify
	CodeCSRInvalid         ErrorCode = "csr_invalid"         // 422 not a TCG-CSR-IDEVID the CA parses
	CodeCSRSignature       ErrorCode = "csr_signature"       // 422 the CSR's signature does not verify under its IDevID
	CodeInternal           ErrorCode = "internal"            // 500
)

// ErrorBody is the JSON body of every non-2xx answer.
type ErrorBody struct {
	Error struct {
		Code    ErrorCode `json:"code"`
		Message string    `json:"message"`
	} `json:"error"`
}

// Error is a typed protocol error: what the CA refused and why. The station maps codes to board failure
// reasons; the CA maps them to HTTP statuses.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, &Error{Code: X}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf builds a protocol error.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// EKListUpload is the body of POST /v1/ek-lists: a batch's EK list pushed by an authenticated station
// (its client certificate is the authentication). The offline form is the station-signed EK list file of
// docs/ek-list.md, which `upstream-ca ek-list import` reads and verifies.
type EKListUpload struct {
	Batch   string        `json:"batch"`
	Entries []EKListEntry `json:"entries"`
}

// EKListEntry is one board of an EK list.
type EKListEntry struct {
	Serial string `json:"serial"`
	// EKCert is the EK certificate (DER, or as read from NV: ekcert.Normalise is applied). Optional when
	// EKPublic is given, but at least one of the two is required.
	EKCert []byte `json:"ek_cert,omitempty"`
	// EKPublic is the EK's marshalled TPMT_PUBLIC. Optional when EKCert is given.
	EKPublic []byte `json:"ek_public,omitempty"`
	// EKPublicSHA256 is the lower-case hex SHA-256 of the EK's DER SubjectPublicKeyInfo ;
	// the CA recomputes it and refuses the list if it differs.
	EKPublicSHA256  string `json:"ek_public_sha256"`
	TPMManufacturer string `json:"tpm_manufacturer,omitempty"`
	TPMModel        string `json:"tpm_model,omitempty"`
	TPMFirmware     string `json:"tpm_firmware,omitempty"`
}

// EKListResult is the answer to an EK list upload.
type EKListResult struct {
	Batch    string `json:"batch"`
	Received int    `json:"received"`
	Added    int    `json:"added"` // entries new to the CA; the rest were already listed under the same serial
}
