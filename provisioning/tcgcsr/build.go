package tcgcsr

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/provisioning"
)

// Board is what the device side puts in a CSR besides the TPM's own output.
type Board struct {
	Model  string // prodModel: the product
	Serial string // prodSerial: the board serial
	EKCert []byte // DER, as the CA should see it (ekcert.Normalise of what NV holds)
}

// Build makes a board's TCG-CSR-IDEVID in its TPM: TPM2_Certify of the IDevID by the IAK (empty
// qualifyingData: the CSR is made before any CA is asked, so freshness comes from the CA's credential
// challenge, docs/protocol.md), the content, and TPM2_Sign by the IDevID over the content's digest with the
// IDevID's scheme hash (SHA-256 for a NULL-scheme P-256 or RSA key, SHA-384 for P-384). Both keys must be
// loaded.
func Build(tpm transport.TPM, b Board, iak, idevid *provisioning.Key) ([]byte, error) {
	if iak == nil || idevid == nil {
		return nil, errors.New("building the TCG-CSR-IDEVID: IAK and IDevID must be loaded")
	}
	attest, attestSig, err := provisioning.Certify(tpm, iak, idevid, nil)
	if err != nil {
		return nil, fmt.Errorf("building the TCG-CSR-IDEVID: %w", err)
	}
	_, hashAlg, err := signScheme(&idevid.Public)
	if err != nil {
		return nil, fmt.Errorf("building the TCG-CSR-IDEVID: IDevID: %w", err)
	}
	c := &Content{
		HashAlg: hashAlg, ProdModel: b.Model, ProdSerial: b.Serial, EKCert: b.EKCert,
		AttestPub: iak.PublicBytes, SigningPub: idevid.PublicBytes, SgnCertifyInfo: attest,
		SgnCertifyInfoSignature: attestSig,
	}
	return Sign(tpm, idevid, c)
}

// Sign marshals c and signs it with idevid in the TPM (TPM2_Sign over c.HashAlg's digest of the content,
// with the IDevID's scheme), returning the TCG_CSR_IDEVID. c.HashAlg should be the IDevID's scheme hash
// (Build sets it); a TPM refuses another for a key with a fixed scheme.
func Sign(tpm transport.TPM, idevid *provisioning.Key, c *Content) ([]byte, error) {
	scheme, _, err := signScheme(&idevid.Public)
	if err != nil {
		return nil, fmt.Errorf("signing the TCG-CSR-IDEVID: IDevID: %w", err)
	}
	scheme.Details = tpm2.NewTPMUSigScheme(scheme.Scheme, &tpm2.TPMSSchemeHash{HashAlg: c.HashAlg})
	content, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("signing the TCG-CSR-IDEVID: %w", err)
	}
	digest, err := Digest(c.HashAlg, content)
	if err != nil {
		return nil, fmt.Errorf("signing the TCG-CSR-IDEVID: %w", err)
	}
	rsp, err := (tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: idevid.Handle, Name: idevid.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   scheme,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}).Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("signing the TCG-CSR-IDEVID with the IDevID: %w", err)
	}
	return Envelope(content, tpm2.Marshal(rsp.Signature)), nil
}

// signScheme is the IDevID's own scheme and hash, or for a NULL-scheme key the TCG template's default for
// its algorithm.
func signScheme(pub *tpm2.TPMTPublic) (tpm2.TPMTSigScheme, tpm2.TPMIAlgHash, error) {
	mk := func(alg tpm2.TPMAlgID, h tpm2.TPMIAlgHash) (tpm2.TPMTSigScheme, tpm2.TPMIAlgHash, error) {
		return tpm2.TPMTSigScheme{Scheme: alg, Details: tpm2.NewTPMUSigScheme(alg, &tpm2.TPMSSchemeHash{HashAlg: h})}, h, nil
	}
	fail := func(err error) (tpm2.TPMTSigScheme, tpm2.TPMIAlgHash, error) { return tpm2.TPMTSigScheme{}, 0, err }
	switch pub.Type {
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err != nil {
			return fail(err)
		}
		if p.Scheme.Scheme == tpm2.TPMAlgECDSA {
			d, err := p.Scheme.Details.ECDSA()
			if err != nil {
				return fail(err)
			}
			return mk(tpm2.TPMAlgECDSA, d.HashAlg)
		}
		if p.CurveID == tpm2.TPMECCNistP384 {
			return mk(tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA384)
		}
		return mk(tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256)
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err != nil {
			return fail(err)
		}
		switch p.Scheme.Scheme {
		case tpm2.TPMAlgRSASSA:
			d, err := p.Scheme.Details.RSASSA()
			if err != nil {
				return fail(err)
			}
			return mk(tpm2.TPMAlgRSASSA, d.HashAlg)
		case tpm2.TPMAlgRSAPSS:
			d, err := p.Scheme.Details.RSAPSS()
			if err != nil {
				return fail(err)
			}
			return mk(tpm2.TPMAlgRSAPSS, d.HashAlg)
		}
		return mk(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256)
	}
	return fail(fmt.Errorf("key type %#04x is not RSA or ECC", uint16(pub.Type)))
}
