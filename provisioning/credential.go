package provisioning

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ActivateCredential recovers the secret the CA encrypted to the EK with TPM2_MakeCredential over the IAK's
// Name (TPM 2.0 Part 3 section 12.5). It succeeds only if this TPM holds that EK and has exactly that IAK
// loaded: the proof the CA asks for.
//
// The IAK (activateHandle, ADMIN role) is authorised with a password session (see IAKTemplate). The EK
// (keyHandle, USER role) is authorised the way its template allows: a policy session with
// TPM2_PolicySecret(TPM_RH_ENDORSEMENT) for the low range templates (userWithAuth clear, PolicyA); the
// high range templates set userWithAuth, so a password session with the EK's empty authValue does.
func ActivateCredential(tpm transport.TPM, ek, iak *Key, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	if ek == nil || iak == nil {
		return nil, errors.New("activating credential: EK and IAK must be loaded")
	}
	// TPM 2.0 Part 2: TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET are bounded by the TPM's buffers; anything
	// larger than a public area is not a credential.
	if len(credentialBlob) == 0 || len(credentialBlob) > MaxPublicBytes {
		return nil, fmt.Errorf("activating credential: credential blob is %d bytes", len(credentialBlob))
	}
	if len(encryptedSecret) == 0 || len(encryptedSecret) > MaxPublicBytes {
		return nil, fmt.Errorf("activating credential: encrypted secret is %d bytes", len(encryptedSecret))
	}

	ekAuth := tpm2.PasswordAuth(nil)
	if !ek.Public.ObjectAttributes.UserWithAuth {
		sess, closeSess, err := tpm2.PolicySession(tpm, ek.Public.NameAlg, 16)
		if err != nil {
			return nil, fmt.Errorf("activating credential: starting EK policy session: %w", err)
		}
		defer func() { _ = closeSess() }()
		_, err = (tpm2.PolicySecret{
			AuthHandle:    endorsementAuth(),
			PolicySession: sess.Handle(),
			NonceTPM:      sess.NonceTPM(),
		}).Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("activating credential: PolicySecret(endorsement): %w", err)
		}
		ekAuth = sess
	}

	rsp, err := (tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: iak.Handle, Name: iak.Name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: ekAuth},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
	}).Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("activating credential: %w", err)
	}
	if len(rsp.CertInfo.Buffer) == 0 || len(rsp.CertInfo.Buffer) > MaxSecretBytes {
		return nil, fmt.Errorf("activating credential: TPM returned a %d-byte secret", len(rsp.CertInfo.Buffer))
	}
	return rsp.CertInfo.Buffer, nil
}

// Certify has the IAK sign a TPM2_Certify attestation of the IDevID with qualifyingData = nonce (TPM 2.0
// Part 3 section 18.2), with the IAK's own signing scheme. It returns the marshalled TPMS_ATTEST (the
// contents of the TPM2B_ATTEST) and the marshalled TPMT_SIGNATURE, after checking that the TPM produced
// what was asked: TPM_GENERATED magic, ATTEST_CERTIFY, our nonce, the IDevID's Name.
func Certify(tpm transport.TPM, iak, idevid *Key, nonce []byte) (attest, sig []byte, err error) {
	if iak == nil || idevid == nil {
		return nil, nil, errors.New("certifying IDevID: IAK and IDevID must be loaded")
	}
	if len(nonce) > 64 { // TPM2B_DATA holds at most sizeof(TPMT_HA)
		return nil, nil, fmt.Errorf("certifying IDevID: nonce is %d bytes", len(nonce))
	}
	rsp, err := (tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: idevid.Handle, Name: idevid.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: iak.Handle, Name: iak.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}).Execute(tpm)
	if err != nil {
		return nil, nil, fmt.Errorf("certifying IDevID: %w", err)
	}
	attest = rsp.CertifyInfo.Bytes()
	if len(attest) == 0 || len(attest) > MaxAttestBytes {
		return nil, nil, fmt.Errorf("certifying IDevID: TPM returned a %d-byte attestation", len(attest))
	}
	sig, err = safeMarshal(rsp.Signature)
	if err != nil {
		return nil, nil, fmt.Errorf("certifying IDevID: %w", err)
	}
	if len(sig) > MaxSigBytes {
		return nil, nil, fmt.Errorf("certifying IDevID: TPM returned a %d-byte signature", len(sig))
	}
	info, err := ParseCertifyInfo(attest)
	if err != nil {
		return nil, nil, fmt.Errorf("certifying IDevID: %w", err)
	}
	if string(info.Attest.ExtraData.Buffer) != string(nonce) {
		return nil, nil, errors.New("certifying IDevID: attestation does not carry our nonce")
	}
	if string(info.Certify.Name.Buffer) != string(idevid.Name.Buffer) {
		return nil, nil, errors.New("certifying IDevID: attestation names another key than the IDevID")
	}
	return append([]byte(nil), attest...), sig, nil
}

// CertifyInfo is a parsed TPM2_Certify attestation.
type CertifyInfo struct {
	Attest  *tpm2.TPMSAttest
	Certify *tpm2.TPMSCertifyInfo
}

// ParseCertifyInfo strictly decodes a marshalled TPMS_ATTEST (DecodeAttest: bounded, canonical, no
// trailing bytes) and checks what go-tpm v0.9.8 does not: the TPM_GENERATED magic (0xff544347, TPM 2.0
// Part 2 section 6.2) and the type TPM_ST_ATTEST_CERTIFY.
func ParseCertifyInfo(attest []byte) (*CertifyInfo, error) {
	a, err := DecodeAttest(attest)
	if err != nil {
		return nil, fmt.Errorf("parsing attestation: %w", err)
	}
	if a.Magic != tpm2.TPMGeneratedValue {
		return nil, fmt.Errorf("attestation magic is %#x, not TPM_GENERATED", uint32(a.Magic))
	}
	if a.Type != tpm2.TPMSTAttestCertify {
		return nil, fmt.Errorf("attestation type is %#x, not ATTEST_CERTIFY", uint16(a.Type))
	}
	c, err := a.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("parsing attestation: %w", err)
	}
	return &CertifyInfo{Attest: a, Certify: c}, nil
}
