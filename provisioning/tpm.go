package provisioning

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/internal/tpmhandle"
)

// Handle ranges, TPM 2.0 Part 2 section 7.2 (TPM_HT) and 7.4 (TPM_RH / first handles of each type).
const (
	firstTransient     = tpmhandle.FirstTransient
	firstLoadedSession = tpmhandle.FirstLoadedSession
	firstSavedSession  = tpmhandle.FirstSavedSession
	firstPersistent    = 0x81000000 // TPM_HT_PERSISTENT << 24
	firstNVIndex       = 0x01000000 // TPM_HT_NV_INDEX << 24
)

// maxCapabilityRounds bounds every GetCapability loop: a TPM that keeps answering moreData=YES (or
// repeats itself) must not keep the station spinning.
const maxCapabilityRounds = 64

// ownerAuth and endorsementAuth are the hierarchies with an empty authValue, as a board arrives on the
// line (TCG PC Client Platform TPM Profile: owner and endorsement auth are empty after TPM2_Clear).
func ownerAuth(tpm transport.TPM) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: authSession(tpm)}
}

func endorsementAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)}
}

// flush unloads a transient object or session. Persistent handles and TPM_RH_NULL are left alone, so
// callers can `defer flush(tpm, key.Handle)` whatever kind of key they hold.
func flush(tpm transport.TPM, h tpm2.TPMHandle) error {
	switch uint32(h) >> 24 {
	case firstTransient >> 24, firstLoadedSession >> 24, firstSavedSession >> 24:
	default:
		return nil
	}
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(tpm); err != nil {
		return fmt.Errorf("flushing handle %#x: %w", uint32(h), err)
	}
	return nil
}

// ListHandles returns the handles the TPM reports in [first, last], in the TPM's order (TPM2_GetCapability
// TPM_CAP_HANDLES). Under a resource manager only this connection's transient objects and sessions show.
func ListHandles(tpm transport.TPM, first, last uint32) ([]tpm2.TPMHandle, error) {
	return tpmhandle.List(tpm, first, last)
}

// FlushTransients flushes every loaded transient object and every session (loaded or saved). A crashed run
// leaves them behind when there is no resource manager, and the TPM has only 3 object slots; the station
// calls this at the start of each board.
func FlushTransients(tpm transport.TPM) error {
	_, err := tpmhandle.FlushAll(tpm)
	return err
}

// Properties are the fixed TPM properties the station records and the NV limits it chunks by.
type Properties struct {
	Info TPMInfo
	// NVBufferMax is TPM_PT_NV_BUFFER_MAX: the largest NV_Read/NV_Write in one command (1024 on swtpm and
	// the simulator, 768 on an SLB9665).
	NVBufferMax int
	// NVIndexMax is TPM_PT_NV_INDEX_MAX: the largest NV index data size (2048 on swtpm and the simulator).
	NVIndexMax int
	// FirmwareV1 and FirmwareV2 are the raw TPM_PT_FIRMWARE_VERSION_1/2 values.
	FirmwareV1, FirmwareV2 uint32
}

// Plausible bounds on what a TPM reports for its NV limits. TPM 2.0 Part 2 puts MAX_NV_BUFFER_SIZE and
// MAX_NV_INDEX_SIZE in the implementation's hands; a value outside these is a broken or hostile TPM.
const (
	minNVBuffer = 64
	maxNVBuffer = 4096
	maxNVIndex  = 1 << 16 // dataSize is a UINT16
)

// ReadProperties reads the TPM_PT_FIXED group (TPM 2.0 Part 2 section 6.13): manufacturer, vendor strings,
// firmware version and the NV limits.
func ReadProperties(tpm transport.TPM) (*Properties, error) {
	if p, ok := cachedProperties(tpm); ok {
		return p, nil
	}
	const first = uint32(tpm2.TPMPTManufacturer) // 0x105; the fixed group runs to 0x1FF
	const last = 0x1FF
	props := map[tpm2.TPMPT]uint32{}
	next := first
	for round := 0; round < maxCapabilityRounds && next <= last; round++ {
		rsp, err := (tpm2.GetCapability{
			Capability:    tpm2.TPMCapTPMProperties,
			Property:      next,
			PropertyCount: last - next + 1,
		}).Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("reading TPM properties: %w", err)
		}
		tp, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("reading TPM properties: %w", err)
		}
		progressed := false
		for _, p := range tp.TPMProperty {
			if uint32(p.Property) < next || uint32(p.Property) > last {
				continue
			}
			props[p.Property] = p.Value
			next = uint32(p.Property) + 1
			progressed = true
		}
		if !rsp.MoreData || !progressed {
			break
		}
	}

	p := &Properties{
		NVBufferMax: int(props[tpm2.TPMPTNVBufferMax]),
		NVIndexMax:  int(props[tpm2.TPMPTNVIndexMax]),
		FirmwareV1:  props[tpm2.TPMPTFirmwareVersion1],
		FirmwareV2:  props[tpm2.TPMPTFirmwareVersion2],
	}
	if p.NVBufferMax < minNVBuffer || p.NVBufferMax > maxNVBuffer {
		return nil, fmt.Errorf("reading TPM properties: implausible TPM_PT_NV_BUFFER_MAX %d (want %d..%d)", p.NVBufferMax, minNVBuffer, maxNVBuffer)
	}
	if p.NVIndexMax <= 0 || p.NVIndexMax > maxNVIndex {
		return nil, fmt.Errorf("reading TPM properties: implausible TPM_PT_NV_INDEX_MAX %d", p.NVIndexMax)
	}
	p.Info = TPMInfo{
		Manufacturer:   propString(props[tpm2.TPMPTManufacturer]),
		ManufacturerID: props[tpm2.TPMPTManufacturer],
		VendorString: propString(props[tpm2.TPMPTVendorString1], props[tpm2.TPMPTVendorString2],
			props[tpm2.TPMPTVendorString3], props[tpm2.TPMPTVendorString4]),
		// TPM 2.0 Part 2 6.13: FIRMWARE_VERSION_1 holds major.minor in its two 16-bit halves and
		// FIRMWARE_VERSION_2 build.patch; vendors print the four numbers dot-separated (Infineon
		// "7.85.4555.0").
		Firmware: fmt.Sprintf("%d.%d.%d.%d", p.FirmwareV1>>16, p.FirmwareV1&0xFFFF, p.FirmwareV2>>16, p.FirmwareV2&0xFFFF),
	}
	rememberProperties(tpm, p)
	return p, nil
}

// ReadTPMInfo reads what the device reports about its TPM to the CA and the audit trail.
func ReadTPMInfo(tpm transport.TPM) (TPMInfo, error) {
	p, err := ReadProperties(tpm)
	if err != nil {
		return TPMInfo{}, err
	}
	return p.Info, nil
}

// propString decodes TPM string properties: each UINT32 carries 4 ASCII characters, most significant byte
// first, padded with NULs (or spaces). Anything outside printable ASCII becomes '?': these strings end up
// in reports and JSON, and a TPM is not trusted to send text.
func propString(vals ...uint32) string {
	var b strings.Builder
	for _, v := range vals {
		var raw [4]byte
		binary.BigEndian.PutUint32(raw[:], v)
		for _, c := range raw {
			switch {
			case c == 0:
			case c >= 0x20 && c < 0x7F:
				b.WriteByte(c)
			default:
				b.WriteByte('?')
			}
		}
	}
	s := strings.TrimSpace(b.String())
	if len(s) > MaxTPMStringLen {
		s = s[:MaxTPMStringLen]
	}
	return s
}

// nvLimits reads only what NV commands need.
func nvLimits(tpm transport.TPM) (bufferMax, indexMax int, err error) {
	p, err := ReadProperties(tpm)
	if err != nil {
		return 0, 0, err
	}
	return p.NVBufferMax, p.NVIndexMax, nil
}

// safeMarshal marshals a TPM structure, turning go-tpm's panic on an impossible union into an error: the
// structures we marshal may have been unmarshalled from a hostile TPM's or client's bytes.
func safeMarshal(v tpm2.Marshallable) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("marshalling %T: %v", v, r)
		}
	}()
	return tpm2.Marshal(v), nil
}
