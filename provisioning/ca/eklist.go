package ca

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// MaxEKListRequestBytes is provisioning.MaxEKListRequestBytes.
const MaxEKListRequestBytes = provisioning.MaxEKListRequestBytes

// MaxBatchLen bounds the batch name of an EK list.
const MaxBatchLen = 128

// The EK list upload's wire types live with the other protocol messages in package provisioning.
type (
	EKListUpload = provisioning.EKListUpload
	EKListEntry  = provisioning.EKListEntry
	EKListResult = provisioning.EKListResult
)

// ImportEKList validates every entry and stores the list in one transaction (all or nothing). Per entry: a
// valid serial (CheckSerial); an EK certificate that parses (ekcert.Parse) and/or an EK public that is exactly
// one TPMT_PUBLIC; when both are given, the same key (ekcert.MatchPublicArea); ek_public_sha256 equal to the
// hash the CA computes; TPM strings printable and bounded. An EK already listed under another serial fails
// the list. Errors are *provisioning.Error with code ek_list_invalid (too_large for the entry count).
func (v *Verifier) ImportEKList(ctx context.Context, station string, up *EKListUpload) (*EKListResult, error) {
	bad := func(format string, args ...any) error {
		return provisioning.Errorf(provisioning.CodeEKListInvalid, format, args...)
	}
	if up == nil {
		return nil, bad("empty EK list")
	}
	if err := checkText("batch", up.Batch, MaxBatchLen, true); err != nil {
		var pe *provisioning.Error
		if errors.As(err, &pe) {
			return nil, bad("%s", pe.Message)
		}
		return nil, err
	}
	if len(up.Entries) == 0 {
		return nil, bad("EK list %q has no entries", up.Batch)
	}
	if len(up.Entries) > provisioning.MaxEKListEntries {
		return nil, provisioning.Errorf(provisioning.CodeTooLarge, "EK list has %d entries, over the bound of %d", len(up.Entries), provisioning.MaxEKListEntries)
	}
	now := v.now().UTC()
	rows := make([]StoredEKListEntry, 0, len(up.Entries))
	for i, e := range up.Entries {
		row, err := checkEKListEntry(&e)
		if err != nil {
			return nil, bad("entry %d (serial %q): %v", i, printable(e.Serial), err)
		}
		row.Batch, row.Station, row.ImportedAtMS = up.Batch, station, ms(now)
		rows = append(rows, *row)
	}
	ev := Event{At: now, Station: station, Kind: "ek_list_imported", Detail: fmt.Sprintf("batch %q", up.Batch)}
	added, err := v.Store.ImportEKList(ctx, rows, ev)
	if err != nil {
		if errors.Is(err, ErrEKListConflict) {
			return nil, bad("%v", err)
		}
		return nil, v.internal("storing the EK list", err)
	}
	v.log().Info("EK list imported", "station", station, "batch", up.Batch, "entries", len(rows), "added", added)
	return &EKListResult{Batch: up.Batch, Received: len(rows), Added: added}, nil
}

// printable makes a hostile string safe to quote in a one-line error.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

func checkEKListEntry(e *EKListEntry) (*StoredEKListEntry, error) {
	if err := CheckSerial(e.Serial); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{
		{"tpm_manufacturer", e.TPMManufacturer}, {"tpm_model", e.TPMModel}, {"tpm_firmware", e.TPMFirmware},
	} {
		if err := checkText(f.name, f.v, provisioning.MaxTPMStringLen, false); err != nil {
			return nil, errors.New(err.(*provisioning.Error).Message)
		}
	}
	if len(e.EKCert) == 0 && len(e.EKPublic) == 0 {
		return nil, errors.New("neither ek_cert nor ek_public given")
	}
	if len(e.EKCert) > provisioning.MaxCertBytes {
		return nil, fmt.Errorf("ek_cert over %d bytes", provisioning.MaxCertBytes)
	}
	row := &StoredEKListEntry{Serial: e.Serial, EKPublic: e.EKPublic, TPMManufacturer: e.TPMManufacturer, TPMModel: e.TPMModel, TPMFirmware: e.TPMFirmware}
	var hash []byte
	var cert *ekcert.Certificate
	if len(e.EKCert) > 0 {
		c, err := ekcert.Parse(e.EKCert)
		if err != nil {
			return nil, fmt.Errorf("ek_cert: %v", err)
		}
		if hash, err = EKPublicSHA256(c.X509.PublicKey); err != nil {
			return nil, fmt.Errorf("ek_cert key: %v", err)
		}
		cert, row.EKCert = c, c.DER
	}
	if len(e.EKPublic) > 0 {
		_, err := parsePublic("ek_public", e.EKPublic)
		if err != nil {
			return nil, errors.New(err.(*provisioning.Error).Message)
		}
		key, err := publicKey(e.EKPublic)
		if err != nil {
			return nil, fmt.Errorf("ek_public: %v", err)
		}
		h, err := EKPublicSHA256(key)
		if err != nil {
			return nil, fmt.Errorf("ek_public: %v", err)
		}
		if cert != nil {
			if err := ekcert.MatchPublicArea(cert.X509, e.EKPublic); err != nil {
				return nil, errors.New("ek_public is not the key of ek_cert")
			}
		}
		hash = h
	}
	want, err := hex.DecodeString(e.EKPublicSHA256)
	if err != nil || len(want) != 32 {
		return nil, errors.New("ek_public_sha256 is not 64 hex digits")
	}
	if !bytes.Equal(want, hash) {
		return nil, errors.New("ek_public_sha256 is not the SHA-256 of the EK's SubjectPublicKeyInfo")
	}
	row.EKSHA256 = hash
	return row, nil
}
