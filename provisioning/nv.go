package provisioning

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNVAbsent reports that an NV index is not defined (TPM_RC_HANDLE on TPM2_NV_ReadPublic).
var ErrNVAbsent = errors.New("NV index not defined")

// ErrNVEmpty reports that an NV index is defined but was never written (TPMA_NV_WRITTEN clear).
var ErrNVEmpty = errors.New("NV index never written")

// ErrNVLocked reports that an NV index is write-locked with other contents than the ones asked for: a
// rework has to Clear the board first.
var ErrNVLocked = errors.New("NV index is write-locked")

// NVState is what an NV index holds, as Inspect reports it.
type NVState struct {
	Index      uint32
	Attributes tpm2.TPMANV
	DataSize   int
	// Data is the index contents (nil when the index is defined but never written).
	Data []byte
}

// nvPublic reads an index's public area. An undefined index gives ErrNVAbsent.
func nvPublic(tpm transport.TPM, index uint32) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	if knownAbsent(tpm, index) {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("NV %#x: %w", index, ErrNVAbsent)
	}
	rsp, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}).Execute(tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, tpm2.TPM2BName{}, fmt.Errorf("NV %#x: %w", index, ErrNVAbsent)
		}
		return nil, tpm2.TPM2BName{}, fmt.Errorf("reading public area of NV %#x: %w", index, err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("reading public area of NV %#x: %w", index, err)
	}
	if uint32(pub.NVIndex) != index {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("reading public area of NV %#x: TPM answered for index %#x", index, uint32(pub.NVIndex))
	}
	return pub, rsp.NVName, nil
}

// nvReadAuth picks the authorisation an index allows for reading, in the order a station can satisfy
// it: the index's own (empty) authValue, then owner authorisation with an empty owner auth. Platform
// authorisation belongs to the board's firmware and is never used here.
func nvReadAuth(tpm transport.TPM, index uint32, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName) (tpm2.AuthHandle, error) {
	switch {
	case pub.Attributes.AuthRead:
		return tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: authSession(tpm)}, nil
	case pub.Attributes.OwnerRead:
		return ownerAuth(tpm), nil
	default:
		return tpm2.AuthHandle{}, fmt.Errorf("NV %#x allows neither AUTHREAD nor OWNERREAD", index)
	}
}

// ReadNV reads a whole NV index, at most max bytes (an index declaring more is refused before any read),
// in chunks of TPM_PT_NV_BUFFER_MAX.
func ReadNV(tpm transport.TPM, index uint32, max int) ([]byte, error) {
	bufMax, _, err := nvLimits(tpm)
	if err != nil {
		return nil, fmt.Errorf("reading NV %#x: %w", index, err)
	}
	pub, name, err := nvPublic(tpm, index)
	if err != nil {
		return nil, err
	}
	return readNV(tpm, index, pub, name, max, bufMax)
}

func readNV(tpm transport.TPM, index uint32, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName, max, bufMax int) ([]byte, error) {
	size := int(pub.DataSize)
	if size > max {
		return nil, fmt.Errorf("reading NV %#x: index declares %d bytes, more than the %d allowed", index, size, max)
	}
	if !pub.Attributes.Written {
		return nil, fmt.Errorf("reading NV %#x: %w", index, ErrNVEmpty)
	}
	if pub.Attributes.NT != tpm2.TPMNTOrdinary {
		return nil, fmt.Errorf("reading NV %#x: not an ordinary index (type %d)", index, pub.Attributes.NT)
	}
	auth, err := nvReadAuth(tpm, index, pub, name)
	if err != nil {
		return nil, fmt.Errorf("reading NV %#x: %w", index, err)
	}
	out := make([]byte, 0, size)
	for off := 0; off < size; {
		n := min(bufMax, size-off)
		rsp, err := (tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
			Size:       uint16(n),
			Offset:     uint16(off),
		}).Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("reading NV %#x at offset %d: %w", index, off, err)
		}
		if len(rsp.Data.Buffer) != n {
			return nil, fmt.Errorf("reading NV %#x at offset %d: TPM returned %d bytes, asked %d", index, off, len(rsp.Data.Buffer), n)
		}
		out = append(out, rsp.Data.Buffer...)
		off += n
	}
	return out, nil
}

// certNVAttributes are the attributes of the IAK and IDevID certificate indices: the owner writes, anyone
// reads with the empty index auth (a certificate is public), owner reads too; NO_DA so that a wrong read
// auth never pushes the TPM into lockout. WRITEDEFINE makes TPM2_NV_WriteLock permanent (until the index
// is undefined). TPM 2.0 Part 2 section 13.4.
func certNVAttributes(writeLock bool) tpm2.TPMANV {
	return tpm2.TPMANV{
		OwnerWrite:  true,
		AuthRead:    true,
		OwnerRead:   true,
		NoDA:        true,
		WriteDefine: writeLock,
		NT:          tpm2.TPMNTOrdinary,
	}
}

// WriteCertNV stores a certificate in an NV index under the owner hierarchy: defined with
// OWNERWRITE|AUTHREAD|OWNERREAD|NO_DA (|WRITEDEFINE with writeLock), written in chunks of
// TPM_PT_NV_BUFFER_MAX, then TPM2_NV_WriteLock when writeLock is set.
//
// It is idempotent for resume: an index that already holds exactly der is left alone (and locked if asked).
// An unlocked index with other contents or attributes, left by an interrupted run, is undefined and
// written again. A write-locked index with other contents gives ErrNVLocked; a platform-created index is
// never touched.
func WriteCertNV(tpm transport.TPM, index uint32, der []byte, writeLock bool) error {
	if len(der) == 0 {
		return fmt.Errorf("writing NV %#x: empty certificate", index)
	}
	bufMax, indexMax, err := nvLimits(tpm)
	if err != nil {
		return fmt.Errorf("writing NV %#x: %w", index, err)
	}
	if len(der) > indexMax {
		return fmt.Errorf("writing NV %#x: certificate is %d bytes, the TPM's NV_INDEX_MAX is %d", index, len(der), indexMax)
	}
	want := certNVAttributes(writeLock)
	defined := tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(index),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: want,
		DataSize:   uint16(len(der)),
	}
	define := func() error {
		_, err := (tpm2.NVDefineSpace{AuthHandle: ownerAuth(tpm), PublicInfo: tpm2.New2B(defined)}).Execute(tpm)
		return err
	}
	// The index is not read first: TPM2_NV_DefineSpace refuses an existing index with TPM_RC_NV_DEFINED
	// (TPM 2.0 Part 3, 31.3), and only then is what it holds read and compared. A factory-new board costs
	// one command fewer per certificate.
	err = define()
	if errors.Is(err, tpm2.TPMRCNVDefined) {
		pub, name, perr := nvPublic(tpm, index)
		switch {
		case perr != nil:
			return fmt.Errorf("writing NV %#x: %w", index, perr)
		case pub.Attributes.PlatformCreate:
			return fmt.Errorf("writing NV %#x: index was defined by the platform; choose another index", index)
		}
		same := int(pub.DataSize) == len(der) && pub.Attributes.Written && sameCertAttributes(pub.Attributes, want)
		if same {
			got, err := readNV(tpm, index, pub, name, len(der), bufMax)
			if err != nil {
				return fmt.Errorf("writing NV %#x: %w", index, err)
			}
			if bytes.Equal(got, der) {
				if writeLock && !pub.Attributes.WriteLocked {
					return nvWriteLock(tpm, index)
				}
				return nil
			}
		}
		if pub.Attributes.WriteLocked {
			return fmt.Errorf("writing NV %#x: %w with other contents; clear the board (rework) first", index, ErrNVLocked)
		}
		if err := undefineNV(tpm, index); err != nil {
			return fmt.Errorf("writing NV %#x: %w", index, err)
		}
		err = define()
	}
	if err != nil {
		return fmt.Errorf("defining NV %#x (%d bytes): %w", index, len(der), err)
	}
	for off := 0; off < len(der); {
		n := min(bufMax, len(der)-off)
		// The index Name covers its public area, which gains TPMA_NV_WRITTEN with the first write. It is
		// computed from what was defined instead of read back before every chunk; under the owner's
		// password session it does not enter the authorisation, and the read-back step checks the result.
		name, err := tpm2.NVName(&defined)
		if err != nil {
			return fmt.Errorf("writing NV %#x: %w", index, err)
		}
		defined.Attributes.Written = true
		_, err = (tpm2.NVWrite{
			AuthHandle: ownerAuth(tpm),
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: der[off : off+n]},
			Offset:     uint16(off),
		}).Execute(tpm)
		if err != nil {
			return fmt.Errorf("writing NV %#x at offset %d (%d bytes): %w", index, off, n, err)
		}
		off += n
	}
	if writeLock {
		return nvWriteLock(tpm, index)
	}
	return nil
}

func sameCertAttributes(got, want tpm2.TPMANV) bool {
	return got.OwnerWrite == want.OwnerWrite && got.AuthRead == want.AuthRead && got.OwnerRead == want.OwnerRead &&
		got.NoDA == want.NoDA && got.WriteDefine == want.WriteDefine && got.NT == want.NT &&
		!got.PolicyDelete && !got.PlatformCreate
}

func nvWriteLock(tpm transport.TPM, index uint32) error {
	_, name, err := nvPublic(tpm, index)
	if err != nil {
		return fmt.Errorf("write-locking NV %#x: %w", index, err)
	}
	_, err = (tpm2.NVWriteLock{
		AuthHandle: ownerAuth(tpm),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}).Execute(tpm)
	if err != nil {
		return fmt.Errorf("write-locking NV %#x: %w", index, err)
	}
	return nil
}

// undefineNV removes an owner-created index with owner authorisation. TPM 2.0 Part 3 31.4: write-locked
// indices can be undefined too; only TPMA_NV_PLATFORMCREATE (platform auth needed) and
// TPMA_NV_POLICY_DELETE (NV_UndefineSpaceSpecial needed) indices cannot.
func undefineNV(tpm transport.TPM, index uint32) error {
	_, name, err := nvPublic(tpm, index)
	if err != nil {
		return fmt.Errorf("undefining NV %#x: %w", index, err)
	}
	_, err = (tpm2.NVUndefineSpace{
		AuthHandle: ownerAuth(tpm),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}).Execute(tpm)
	if err != nil {
		return fmt.Errorf("undefining NV %#x: %w", index, err)
	}
	return nil
}

// InspectNV reports what an index holds; nil, nil when it is not defined. Data is read up to max bytes.
func InspectNV(tpm transport.TPM, index uint32, max int) (*NVState, error) {
	pub, name, err := nvPublic(tpm, index)
	if errors.Is(err, ErrNVAbsent) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := &NVState{Index: index, Attributes: pub.Attributes, DataSize: int(pub.DataSize)}
	if !pub.Attributes.Written {
		return st, nil
	}
	bufMax, _, err := nvLimits(tpm)
	if err != nil {
		return nil, fmt.Errorf("inspecting NV %#x: %w", index, err)
	}
	st.Data, err = readNV(tpm, index, pub, name, max, bufMax)
	if err != nil {
		return nil, err
	}
	return st, nil
}
