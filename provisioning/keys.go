package provisioning

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Key is a key loaded in the TPM: a transient primary the caller must flush (Flush), or a persistent
// key (Flush does nothing).
type Key struct {
	Handle tpm2.TPMHandle
	Name   tpm2.TPM2BName
	Public tpm2.TPMTPublic
	// PublicBytes is the marshalled TPMT_PUBLIC exactly as the TPM returned it (what goes on the wire).
	PublicBytes []byte
}

// Flush unloads the key if it is transient.
func (k *Key) Flush(tpm transport.TPM) error {
	if k == nil {
		return nil
	}
	return flush(tpm, k.Handle)
}

// KeyAlg selects a template from TCG "TPM 2.0 Keys for Device Identity and Attestation" (v1.0 r12,
// section 7.3.4, Appendix templates H-1..H-3) for the IAK and the IDevID.
type KeyAlg string

// Key algorithms a product profile may choose.
const (
	KeyRSA2048 KeyAlg = "rsa2048" // H-1: RSA-2048, SHA-256
	KeyP256    KeyAlg = "p256"    // H-2: ECC NIST P-256, SHA-256 (the default)
	KeyP384    KeyAlg = "p384"    // H-3: ECC NIST P-384, SHA-384
)

// DefaultKeyAlg is H-2, as DESIGN.md and the TCG specification recommend.
const DefaultKeyAlg = KeyP256

// ParseKeyAlg reads a product profile's algorithm name; "" means the default.
func ParseKeyAlg(s string) (KeyAlg, error) {
	switch KeyAlg(s) {
	case "":
		return DefaultKeyAlg, nil
	case KeyRSA2048, KeyP256, KeyP384:
		return KeyAlg(s), nil
	}
	return "", fmt.Errorf("unknown key algorithm %q (want rsa2048, p256 or p384)", s)
}

// NameAlg is the template's name algorithm. The IAK's must equal the EK's for credential activation
// (DESIGN.md; the CA enforces it).
func (a KeyAlg) NameAlg() (tpm2.TPMAlgID, error) {
	switch a {
	case KeyRSA2048, KeyP256:
		return tpm2.TPMAlgSHA256, nil
	case KeyP384:
		return tpm2.TPMAlgSHA384, nil
	}
	return 0, fmt.Errorf("unknown key algorithm %q", a)
}

// The unique field of the templates holds an ASCII label so that the IAK and the IDevID, both primaries
// of the endorsement hierarchy with otherwise similar templates, are different keys (TCG Device Identity
// spec, section 7.3.4: unique = "IAK" / "IDEVID").
var (
	uniqueIAK    = []byte("IAK")
	uniqueIDevID = []byte("IDEVID")
)

// IAKTemplate returns the IAK template for alg.
//
// Deviation from the TCG templates, on purpose for this version: the specification sets adminWithPolicy
// and an authPolicy (a PolicyOR tree) so that ADMIN-role uses (ActivateCredential's activateHandle,
// Certify's objectHandle) need a policy session. Here adminWithPolicy is clear and authPolicy empty, with
// userWithAuth and an empty authValue: every use is a password session. The keys are therefore not the ones
// tpm2_createprimary makes from the published template (their Names differ); the security-relevant
// attributes the CA checks (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign) are the
// specification's.
func IAKTemplate(alg KeyAlg) (tpm2.TPMTPublic, error) {
	return deviceKeyTemplate(alg, true)
}

// IDevIDTemplate returns the IDevID template for alg (same deviation as IAKTemplate). The IDevID is a
// non-restricted signing key: it signs TLS handshakes, not only TPM-made data.
func IDevIDTemplate(alg KeyAlg) (tpm2.TPMTPublic, error) {
	return deviceKeyTemplate(alg, false)
}

// IDevIDScheme is the signing scheme an IDevID's template fixes.
type IDevIDScheme string

// IDevID schemes a product profile may choose.
const (
	// IDevIDSchemeTemplate keeps the TCG template's: ECDSA with the curve's hash for ECC (H-2: SHA-256),
	// NULL for RSA.
	IDevIDSchemeTemplate IDevIDScheme = ""
	// IDevIDSchemeNull leaves the scheme to each TPM2_Sign, so one ECC key signs ECDSA with SHA-256 or
	// SHA-384: a TLS 1.2 peer that asks only for ecdsa_secp256r1_sha384 gets no signature from an H-2 key
	// (the TPM answers TPM_RC_SCHEME), measured with OpenSSL + tpm2-openssl (notes/peers.md).
	IDevIDSchemeNull IDevIDScheme = "null"
)

// ParseIDevIDScheme reads a product profile's scheme name.
func ParseIDevIDScheme(s string) (IDevIDScheme, error) {
	switch IDevIDScheme(s) {
	case IDevIDSchemeTemplate, IDevIDSchemeNull:
		return IDevIDScheme(s), nil
	}
	return "", fmt.Errorf("unknown IDevID scheme %q (want \"null\" or nothing)", s)
}

// IDevIDTemplateFor is IDevIDTemplate with the scheme a product chose.
func IDevIDTemplateFor(alg KeyAlg, scheme IDevIDScheme) (tpm2.TPMTPublic, error) {
	t, err := deviceKeyTemplate(alg, false)
	if err != nil || scheme != IDevIDSchemeNull || t.Type != tpm2.TPMAlgECC {
		return t, err
	}
	parms, err := t.Parameters.ECCDetail()
	if err != nil {
		return tpm2.TPMTPublic{}, err
	}
	parms.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
	return t, nil
}

func deviceKeyTemplate(alg KeyAlg, iak bool) (tpm2.TPMTPublic, error) {
	nameAlg, err := alg.NameAlg()
	if err != nil {
		return tpm2.TPMTPublic{}, err
	}
	unique := uniqueIDevID
	if iak {
		unique = uniqueIAK
	}
	t := tpm2.TPMTPublic{
		NameAlg: nameAlg,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			Restricted:          iak,
			SignEncrypt:         true,
		},
	}
	switch alg {
	case KeyRSA2048:
		// A restricted signing key needs an explicit scheme (TPM 2.0 Part 2 12.2.3.6); the IDevID keeps
		// NULL so TLS stacks can choose PKCS#1 v1.5 or PSS.
		scheme := tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull}
		if iak {
			scheme = tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: nameAlg}),
			}
		}
		t.Type = tpm2.TPMAlgRSA
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    scheme,
			KeyBits:   2048,
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: unique})
	case KeyP256, KeyP384:
		curve := tpm2.TPMECCNistP256
		if alg == KeyP384 {
			curve = tpm2.TPMECCNistP384
		}
		t.Type = tpm2.TPMAlgECC
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: nameAlg}),
			},
			CurveID: curve,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: unique},
			Y: tpm2.TPM2BECCParameter{Buffer: unique},
		})
	}
	return t, nil
}

// CreateIAK creates the IAK as a primary key of the endorsement hierarchy, as the TCG Device Identity
// specification does for OEM-provisioned IAKs (section 6.1). A primary needs no parent key (one fewer of
// the TPM's 3 object slots) and is deterministic: the same template on the same TPM gives the same key until
// the endorsement primary seed changes, so a resumed run gets the very key it enrolled. The caller flushes
// the returned transient key.
func CreateIAK(tpm transport.TPM, alg KeyAlg) (*Key, error) {
	t, err := IAKTemplate(alg)
	if err != nil {
		return nil, fmt.Errorf("creating IAK: %w", err)
	}
	k, err := createPrimary(tpm, tpm2.TPMRHEndorsement, t)
	if err != nil {
		return nil, fmt.Errorf("creating IAK (%s): %w", alg, err)
	}
	return k, nil
}

// CreateIDevID creates the IDevID as a primary key of the endorsement hierarchy (see CreateIAK).
func CreateIDevID(tpm transport.TPM, alg KeyAlg) (*Key, error) {
	return CreateIDevIDFor(tpm, alg, IDevIDSchemeTemplate)
}

// CreateIDevIDFor is CreateIDevID with the scheme a product chose.
func CreateIDevIDFor(tpm transport.TPM, alg KeyAlg, scheme IDevIDScheme) (*Key, error) {
	t, err := IDevIDTemplateFor(alg, scheme)
	if err != nil {
		return nil, fmt.Errorf("creating IDevID: %w", err)
	}
	k, err := createPrimary(tpm, tpm2.TPMRHEndorsement, t)
	if err != nil {
		return nil, fmt.Errorf("creating IDevID (%s): %w", alg, err)
	}
	return k, nil
}

func createPrimary(tpm transport.TPM, hierarchy tpm2.TPMHandle, t tpm2.TPMTPublic) (*Key, error) {
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(t),
	}).Execute(tpm)
	if err != nil {
		return nil, err
	}
	k, err := keyFromPublic(rsp.ObjectHandle, rsp.OutPublic.Bytes(), rsp.Name)
	if err != nil {
		_ = flush(tpm, rsp.ObjectHandle)
		return nil, err
	}
	if err := samePublicShape(&t, &k.Public); err != nil {
		_ = flush(tpm, rsp.ObjectHandle)
		return nil, err
	}
	return k, nil
}

// samePublicShape checks that the TPM created what was asked: a TPM that silently changes attributes or
// algorithms must not get past this step.
func samePublicShape(want, got *tpm2.TPMTPublic) error {
	if got.Type != want.Type || got.NameAlg != want.NameAlg || got.ObjectAttributes != want.ObjectAttributes {
		return fmt.Errorf("TPM created a key of type %v, name alg %v, attributes %+v; asked for %v, %v, %+v",
			got.Type, got.NameAlg, got.ObjectAttributes, want.Type, want.NameAlg, want.ObjectAttributes)
	}
	return nil
}

// keyFromPublic validates a public area returned by the TPM: bounded size, one canonical TPMT_PUBLIC, and
// its Name equal to the one the TPM reported (when it reported one).
func keyFromPublic(h tpm2.TPMHandle, pubBytes []byte, tpmName tpm2.TPM2BName) (*Key, error) {
	pub, name, err := decodePublic(pubBytes)
	if err != nil {
		return nil, fmt.Errorf("public area from TPM: %w", err)
	}
	if len(tpmName.Buffer) > 0 && string(tpmName.Buffer) != string(name.Buffer) {
		return nil, fmt.Errorf("TPM reported Name %x for a public area whose Name is %x", tpmName.Buffer, name.Buffer)
	}
	return &Key{Handle: h, Name: name, Public: *pub, PublicBytes: append([]byte(nil), pubBytes...)}, nil
}

// PublicName computes the TPM Name (nameAlg || H(TPMT_PUBLIC)) of a marshalled TPMT_PUBLIC. Both ends use
// it: the device to address its keys, the CA to build MakeCredential over a Name it computed itself. The
// bytes must be exactly one TPMT_PUBLIC: trailing bytes are refused, since the Name covers the bytes the
// CA was sent and a lenient parser would let two different submissions share a Name.
func PublicName(pub []byte) (tpm2.TPM2BName, error) {
	_, name, err := decodePublic(pub)
	return name, err
}

// decodePublic parses pub, which must be exactly one canonical TPMT_PUBLIC (DecodePublic), and hashes
// those bytes into its Name.
func decodePublic(pub []byte) (*tpm2.TPMTPublic, tpm2.TPM2BName, error) {
	p, err := DecodePublic(pub)
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("parsing public area: %w", err)
	}
	h, err := p.NameAlg.Hash()
	if err != nil || !h.Available() {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("public area has name algorithm %#x, not a hash this station computes", uint16(p.NameAlg))
	}
	w := h.New()
	w.Write(pub)
	name := binary.BigEndian.AppendUint16(make([]byte, 0, 2+h.Size()), uint16(p.NameAlg))
	return p, tpm2.TPM2BName{Buffer: w.Sum(name)}, nil
}

// LoadKey returns the key persisted at handle (TPM2_ReadPublic). A free handle gives an error matching
// tpm2.TPMRCHandle.
func LoadKey(tpm transport.TPM, handle tpm2.TPMHandle) (*Key, error) {
	rsp, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("reading public area at %#x: %w", uint32(handle), err)
	}
	k, err := keyFromPublic(handle, rsp.OutPublic.Bytes(), rsp.Name)
	if err != nil {
		return nil, fmt.Errorf("key at %#x: %w", uint32(handle), err)
	}
	return k, nil
}
