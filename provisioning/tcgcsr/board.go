package tcgcsr

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// Export says whose CSR ForBoard makes.
type Export struct {
	Serial, Model string
	// Keys is the key algorithm of the IAK and IDevID to create on a board that has none persisted yet
	// (the product profile's); a provisioned board's persisted keys are used whatever it says.
	Keys   provisioning.KeyAlg
	Layout provisioning.Layout
}

// Exported is a board's CSR and the enrollment request that carries it to the CA.
type Exported struct {
	CSR     []byte
	Request *provisioning.TCGCSREnrollRequest
	// Persisted: the CSR is for the keys persisted at the layout's handles (a provisioned or claimed
	// board); otherwise for the deterministic primaries of Export.Keys, which provisioning persists later.
	Persisted bool
}

// ForBoard makes the TCG-CSR-IDEVID of the board whose TPM is tpm: the IAK and IDevID persisted at the
// layout's handles if both are there, else created from the TCG templates of e.Keys; the EK certificate
// the CA would be sent (provisioning.ReadChosenEKCert for the IAK's name algorithm, normalised to DER);
// TPM2_Certify and the IDevID's signature (Build). Transient objects it loaded are flushed.
func ForBoard(tpm transport.TPM, e Export) (*Exported, error) {
	st, err := provisioning.Inspect(tpm, e.Layout)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	out := &Exported{}
	iak, idevid := st.IAK, st.IDevID
	switch {
	case iak != nil && idevid != nil:
		out.Persisted = true
	case iak != nil || idevid != nil:
		return nil, fmt.Errorf("board %s: only one of IAK and IDevID is persisted; finish provisioning it (station reconcile) first", e.Serial)
	default:
		if iak, err = provisioning.CreateIAK(tpm, e.Keys); err != nil {
			return nil, fmt.Errorf("board %s: %w", e.Serial, err)
		}
		defer iak.Flush(tpm)
		if idevid, err = provisioning.CreateIDevID(tpm, e.Keys); err != nil {
			return nil, fmt.Errorf("board %s: %w", e.Serial, err)
		}
		defer idevid.Flush(tpm)
	}
	ekNV, ekAlg, chain, err := provisioning.ReadChosenEKCert(tpm, iak.Public.NameAlg, 0)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	der, _, err := ekcert.Normalise(ekNV.Data)
	if err != nil {
		return nil, fmt.Errorf("board %s: EK certificate at %#x: %w", e.Serial, ekNV.Index, err)
	}
	ek, err := provisioning.CreateEK(tpm, ekAlg)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	if err := ek.Flush(tpm); err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	info, err := provisioning.ReadTPMInfo(tpm)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	if out.CSR, err = Build(tpm, Board{Model: e.Model, Serial: e.Serial, EKCert: der}, iak, idevid); err != nil {
		return nil, fmt.Errorf("board %s: %w", e.Serial, err)
	}
	out.Request = &provisioning.TCGCSREnrollRequest{Version: provisioning.ProtocolVersion, CSR: out.CSR,
		EKPublic: ek.PublicBytes, TPM: info}
	for _, c := range chain {
		out.Request.EKChain = append(out.Request.EKChain, c.Data)
	}
	if len(out.Request.EKChain) > provisioning.MaxChainCerts {
		return nil, errors.New("board " + e.Serial + ": the TPM holds more EK chain certificates than the protocol carries")
	}
	return out, nil
}
