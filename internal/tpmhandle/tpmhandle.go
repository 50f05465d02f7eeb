// Package tpmhandle lists and flushes a TPM's loaded handles (TPM2_GetCapability TPM_CAP_HANDLES and
// TPM2_FlushContext). The station uses it at the start of each board; the board-agent uses it when a
// station's connection ends, so a killed station cannot leave the TPM's few object slots full.
package tpmhandle

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// First handles of each type, TPM 2.0 Part 2 section 7.2 (TPM_HT) shifted into place.
const (
	FirstTransient     = 0x80000000 // TPM_HT_TRANSIENT << 24
	FirstLoadedSession = 0x02000000 // TPM_HT_LOADED_SESSION (= TPM_HT_HMAC_SESSION) << 24
	FirstSavedSession  = 0x03000000 // TPM_HT_SAVED_SESSION (= TPM_HT_POLICY_SESSION) << 24
)

// maxRounds bounds every GetCapability loop: a TPM that keeps answering moreData=YES (or repeats itself)
// must not keep the caller spinning. 64 rounds of up to a few hundred handles each is far more than any
// TPM holds.
const maxRounds = 64

// List returns the handles the TPM reports in [first, last], in the TPM's order. Under a resource manager
// only this connection's transient objects and sessions show.
func List(tpm transport.TPM, first, last uint32) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := first
	for round := 0; round < maxRounds; round++ {
		rsp, err := (tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 256, // the TPM returns at most what fits in its response buffer
		}).Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("listing handles from %#x: %w", next, err)
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("listing handles from %#x: %w", next, err)
		}
		progressed := false
		for _, h := range hl.Handle {
			if uint32(h) < next || uint32(h) > last {
				continue // out of range, or a TPM going backwards: ignore rather than loop
			}
			out = append(out, h)
			next = uint32(h) + 1
			progressed = true
		}
		if !rsp.MoreData || !progressed || next == 0 || next > last {
			return out, nil
		}
	}
	return nil, fmt.Errorf("listing handles from %#x: TPM still reports more data after %d rounds", first, maxRounds)
}

// FlushAll flushes every loaded transient object and every session (loaded or saved) and says how many
// it flushed.
func FlushAll(tpm transport.TPM) (int, error) {
	var errs []error
	n := 0
	for _, first := range []uint32{FirstTransient, FirstLoadedSession, FirstSavedSession} {
		hs, err := List(tpm, first, first|0x00FFFFFF)
		if err != nil {
			return n, fmt.Errorf("flushing transients: %w", err)
		}
		for _, h := range hs {
			_, err := (tpm2.FlushContext{FlushHandle: h}).Execute(tpm)
			switch {
			case err == nil:
				n++
			// A session may be listed under both ranges, or vanish between list and flush.
			case errors.Is(err, tpm2.TPMRCHandle), errors.Is(err, tpm2.TPMRCValue):
			default:
				errs = append(errs, fmt.Errorf("flushing handle %#x: %w", uint32(h), err))
			}
		}
	}
	return n, errors.Join(errs...)
}
