package ca

import (
	"bytes"
	"context"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/tcgcsr"
)

// EnrollTCGCSR is round 1 with a TCG-CSR-IDEVID as the evidence (docs/protocol.md, "TCG-CSR-IDEVID"). The
// CSR's TPM2_Certify was made before any CA was asked, so it carries no CA nonce: freshness and the binding
// to the EK come from the credential challenge alone, which is why the CA still answers with one and issues
// only in round 2 (Activate, unchanged). The checks, in order:
//
//  1. req.Version is provisioning.ProtocolVersion (unsupported_version).
//  2. csr is present and within tcgcsr.MaxBytes (bad_request, too_large) and parses strictly: tcgcsr.Parse
//     (csr_invalid).
//  3. Enroll's checks 2 to 9 on the request the CSR makes: serial = prodSerial, product = prodModel, EK
//     certificate = ekCert, IAK = attestPub, IDevID = signingPub, with ek_public, ek_chain, tpm and rework
//     from req. The same code, the same error codes.
//  4. sgnCertifyInfo is a TPMS_ATTEST with the TPM_GENERATED magic and type TPM_ST_ATTEST_CERTIFY
//     (attest_invalid) whose attested Name is the Name of signingPub (attest_name), and
//     sgnCertifyInfoSignature verifies over it under attestPub with the IAK's scheme (attest_signature).
//  5. The CSR's signature is a TPMT_SIGNATURE (csr_signature) with hashAlgoId's hash, which must be
//     SHA-256 or SHA-384, and the IDevID's scheme when it names one, and verifies over the content under
//     signingPub (csr_signature).
//
// The session's nonce is sgnCertifyInfo's extraData, so round 2 presents the CSR's certify evidence again
// and Activate's checks 7 and 8 hold for it as they stand.
func (v *Verifier) EnrollTCGCSR(ctx context.Context, station string, req *provisioning.TCGCSREnrollRequest) (*provisioning.Challenge, error) {
	if req == nil {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "empty request")
	}
	// 1.
	if req.Version != provisioning.ProtocolVersion {
		return nil, provisioning.Errorf(provisioning.CodeUnsupportedVersion, "protocol version %d is not supported; this CA speaks version %d", req.Version, provisioning.ProtocolVersion)
	}
	// 2.
	if err := checkBytes("csr", req.CSR, tcgcsr.MaxBytes); err != nil {
		return nil, err
	}
	csr, err := tcgcsr.Parse(req.CSR)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeCSRInvalid, "%v", err)
	}
	// 3.
	er := &provisioning.EnrollRequest{
		Version: req.Version, Serial: csr.ProdSerial, Product: csr.ProdModel, Rework: req.Rework,
		EKCert: csr.EKCert, EKChain: req.EKChain, EKPublic: req.EKPublic, IAKPublic: csr.AttestPub,
		IDevIDPublic: csr.SigningPub, TPM: req.TPM,
	}
	noteSerial(ctx, printable(er.Serial))
	en, err := v.checkEnroll(ctx, station, er)
	if err != nil {
		return nil, err
	}
	// 4.
	ev, err := parseCertifyField("sgnCertifyInfo", csr.SgnCertifyInfo)
	if err != nil {
		return nil, err
	}
	idevidName, err := objectName(en.idevidPub, csr.SigningPub)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeIDevIDAttributes, "board %q: IDevID: %v", er.Serial, err)
	}
	if !bytes.Equal(ev.Name, idevidName) {
		return nil, provisioning.Errorf(provisioning.CodeAttestName, "board %q: sgnCertifyInfo attests another key than signingPub", er.Serial)
	}
	certSig, err := parseSignatureField("sgnCertifyInfoSignature", csr.SgnCertifyInfoSignature, provisioning.CodeAttestSignature)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(en.iakKey, csr.SgnCertifyInfo, certSig); err != nil {
		return nil, err
	}
	// 5.
	if err := verifyCSRSignature(er.Serial, en.idevidKey, csr); err != nil {
		return nil, err
	}
	nonce := append([]byte{}, ev.Attest.ExtraData.Buffer...) // never nil: the store keeps an empty nonce
	return v.challenge(ctx, station, er, en, nonce)
}

// verifyCSRSignature checks the IDevID's signature over the CSR content. An IDevID with a NULL scheme
// (a product that needs SHA-384 in TLS 1.2) signs with the scheme of its type the signature names.
func verifyCSRSignature(serial string, idevid *keyAlgorithm, csr *tcgcsr.CSR) error {
	fail := func(format string, args ...any) error {
		return provisioning.Errorf(provisioning.CodeCSRSignature, "board %q: "+format, append([]any{serial}, args...)...)
	}
	if !approvedHash(csr.HashAlg) {
		return fail("hashAlgoId %#04x is not SHA-256 or SHA-384", uint16(csr.HashAlg))
	}
	sig, err := parseSignatureField("signature", csr.Signature, provisioning.CodeCSRSignature)
	if err != nil {
		return err
	}
	key := *idevid
	if key.Scheme == tpm2.TPMAlgNull {
		key.Scheme, key.Hash = tpm2.TPMAlgID(sig.SigAlg), csr.HashAlg
	}
	if key.Hash != csr.HashAlg {
		return fail("hashAlgoId %#04x is not the IDevID's scheme hash %#04x", uint16(csr.HashAlg), uint16(key.Hash))
	}
	return verifySignatureBy("IDevID", provisioning.CodeCSRSignature, &key, csr.ContentBytes, sig)
}
