package provisioning

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrHandleOccupied reports that a persistent handle already holds a different key. The station treats it
// as a board that was provisioned before: only an explicit rework (Evict, or Clear) frees the handle.
var ErrHandleOccupied = errors.New("persistent handle holds another key")

// Layout is where a product keeps the device identity in the TPM.
type Layout struct {
	IAKHandle       tpm2.TPMHandle
	IDevIDHandle    tpm2.TPMHandle
	IAKCertIndex    uint32
	IDevIDCertIndex uint32
	// WriteLock write-locks the certificate indices after writing them.
	WriteLock bool
}

// DefaultLayout is DESIGN.md's default layout; a product profile may override it. The handles sit in the
// owner's persistent range (TPM 2.0 Part 2 section 7.4), away from the SRK (0x8100xxxx) and EK (0x8101xxxx)
// blocks of the TCG TPM v2.0 Provisioning Guidance.
func DefaultLayout() Layout {
	return Layout{
		IAKHandle:       0x81020001,
		IDevIDHandle:    0x81020000,
		IAKCertIndex:    0x01C90100,
		IDevIDCertIndex: 0x01C90200,
	}
}

func (l Layout) validate() error {
	for _, h := range []tpm2.TPMHandle{l.IAKHandle, l.IDevIDHandle} {
		// TPM 2.0 Part 2 section 7.4: owner persistent objects live in 0x81000000-0x817FFFFF.
		if uint32(h) < firstPersistent || uint32(h) > 0x817FFFFF {
			return fmt.Errorf("layout: %#x is not an owner persistent handle (0x81000000-0x817FFFFF)", uint32(h))
		}
	}
	for _, i := range []uint32{l.IAKCertIndex, l.IDevIDCertIndex} {
		if i>>24 != firstNVIndex>>24 {
			return fmt.Errorf("layout: %#x is not an NV index", i)
		}
	}
	if l.IAKHandle == l.IDevIDHandle || l.IAKCertIndex == l.IDevIDCertIndex {
		return errors.New("layout: IAK and IDevID share a handle or an NV index")
	}
	return nil
}

// Persist makes key persistent at handle (TPM2_EvictControl with owner authorisation). It is idempotent:
// if handle already holds a key with the same Name, nothing happens. A different key at handle gives
// ErrHandleOccupied; evicting it is a separate, journaled decision (Evict). The transient key stays loaded;
// the caller still flushes it.
//
// The handle is not read first: TPM2_EvictControl refuses an occupied handle with TPM_RC_NV_DEFINED (TPM
// 2.0 Part 3, 28.5), and only then is the occupant read and compared. A factory-new board costs one
// command per key instead of two.
func Persist(tpm transport.TPM, key *Key, handle tpm2.TPMHandle) error {
	if key == nil {
		return errors.New("persisting key: no key")
	}
	if key.Handle == handle {
		return nil
	}
	_, err := (tpm2.EvictControl{
		Auth:             ownerAuth(),
		ObjectHandle:     tpm2.NamedHandle{Handle: key.Handle, Name: key.Name},
		PersistentHandle: handle,
	}).Execute(tpm)
	if err == nil {
		return nil
	}
	if !errors.Is(err, tpm2.TPMRCNVDefined) {
		return fmt.Errorf("persisting key at %#x: %w", uint32(handle), err)
	}
	existing, err := LoadKey(tpm, handle)
	switch {
	case err != nil:
		return fmt.Errorf("persisting key at %#x: %w", uint32(handle), err)
	case string(existing.Name.Buffer) == string(key.Name.Buffer):
		return nil
	default:
		return fmt.Errorf("persisting key at %#x: %w (Name %x)", uint32(handle), ErrHandleOccupied, existing.Name.Buffer)
	}
}

// Evict removes the key persisted at handle (owner authorisation). A free handle is not an error.
func Evict(tpm transport.TPM, handle tpm2.TPMHandle) error {
	existing, err := LoadKey(tpm, handle)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("evicting %#x: %w", uint32(handle), err)
	}
	_, err = (tpm2.EvictControl{
		Auth:             ownerAuth(),
		ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: existing.Name},
		PersistentHandle: handle,
	}).Execute(tpm)
	if err != nil {
		return fmt.Errorf("evicting %#x: %w", uint32(handle), err)
	}
	return nil
}

// BoardState is what a board's TPM holds at the layout's handles and indices; nil fields are empty.
type BoardState struct {
	IAK, IDevID             *Key
	IAKCert, IDevIDCert     *NVState
	IAKHandle, IDevIDHandle tpm2.TPMHandle
}

// Provisioned reports whether every part of the identity is in place.
func (s *BoardState) Provisioned() bool {
	return s.IAK != nil && s.IDevID != nil && s.IAKCert != nil && s.IAKCert.Data != nil &&
		s.IDevIDCert != nil && s.IDevIDCert.Data != nil
}

// Inspect reports what is at the layout's persistent handles and NV indices, for re-runs and rework.
func Inspect(tpm transport.TPM, l Layout) (*BoardState, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	st := &BoardState{IAKHandle: l.IAKHandle, IDevIDHandle: l.IDevIDHandle}
	var err error
	if st.IAK, err = inspectKey(tpm, l.IAKHandle); err != nil {
		return nil, fmt.Errorf("inspecting IAK: %w", err)
	}
	if st.IDevID, err = inspectKey(tpm, l.IDevIDHandle); err != nil {
		return nil, fmt.Errorf("inspecting IDevID: %w", err)
	}
	if st.IAKCert, err = InspectNV(tpm, l.IAKCertIndex, MaxCertBytes); err != nil {
		return nil, fmt.Errorf("inspecting IAK certificate: %w", err)
	}
	if st.IDevIDCert, err = InspectNV(tpm, l.IDevIDCertIndex, MaxCertBytes); err != nil {
		return nil, fmt.Errorf("inspecting IDevID certificate: %w", err)
	}
	return st, nil
}

func inspectKey(tpm transport.TPM, h tpm2.TPMHandle) (*Key, error) {
	k, err := LoadKey(tpm, h)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	return k, err
}

// Clear evicts the persisted IAK and IDevID and undefines the certificate indices (owner authorisation),
// for rework. Write-locked indices are undefined too (TPM 2.0 Part 3 31.4); platform-created ones are
// refused. Missing pieces are skipped, so Clear can finish an interrupted Clear.
func Clear(tpm transport.TPM, l Layout) error {
	if err := l.validate(); err != nil {
		return err
	}
	for _, h := range []tpm2.TPMHandle{l.IAKHandle, l.IDevIDHandle} {
		if err := Evict(tpm, h); err != nil {
			return fmt.Errorf("clearing board: %w", err)
		}
	}
	for _, idx := range []uint32{l.IAKCertIndex, l.IDevIDCertIndex} {
		pub, _, err := nvPublic(tpm, idx)
		if errors.Is(err, ErrNVAbsent) {
			continue
		}
		if err != nil {
			return fmt.Errorf("clearing board: %w", err)
		}
		if pub.Attributes.PlatformCreate || pub.Attributes.PolicyDelete {
			return fmt.Errorf("clearing board: NV %#x was defined by the platform or needs a policy to delete; not ours to remove", idx)
		}
		if err := undefineNV(tpm, idx); err != nil {
			return fmt.Errorf("clearing board: %w", err)
		}
	}
	return nil
}

// Matches checks a read-back board state against what was written.
func (s *BoardState) Matches(iakPub, idevidPub []byte, certs *Certificates, writeLocked bool) error {
	switch {
	case s.IAK == nil || !bytes.Equal(s.IAK.PublicBytes, iakPub):
		return errors.New("read-back: the key at the IAK handle is not the enrolled IAK")
	case s.IDevID == nil || !bytes.Equal(s.IDevID.PublicBytes, idevidPub):
		return errors.New("read-back: the key at the IDevID handle is not the enrolled IDevID")
	case s.IAKCert == nil || !bytes.Equal(s.IAKCert.Data, certs.IAKCert):
		return errors.New("read-back: the IAK certificate in NV differs from the issued one")
	case s.IDevIDCert == nil || !bytes.Equal(s.IDevIDCert.Data, certs.IDevIDCert):
		return errors.New("read-back: the IDevID certificate in NV differs from the issued one")
	case writeLocked && (!s.IAKCert.Attributes.WriteLocked || !s.IDevIDCert.Attributes.WriteLocked):
		return errors.New("read-back: a certificate index is not write-locked")
	}
	return nil
}
