package bench

import (
	"bufio"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// ReportPDF writes the PDF of a batch of n boards to w and returns how long it took. The rows are
// synthetic but shaped like a real batch (2% failed, 0.5% stopped, one board finishing every ~1.4 s on
// 8 slots); the report code is the subject, not the inventory.
func ReportPDF(w io.Writer, n int) (time.Duration, error) {
	opened := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	info := reports.BatchInfo{ID: "BENCH-PDF", Product: "default", WorkOrder: "WO-1", Stations: []string{"bench"},
		Operators: []string{"bench"}, Opened: opened, Closed: opened.Add(time.Duration(n) * 1400 * time.Millisecond).Add(time.Hour), Quantity: n}
	rows := func(yield func(reports.BoardRow) error) error {
		for i := range n {
			h := sha256.Sum256([]byte(fmt.Sprint("ek", i)))
			start := opened.Add(time.Duration(i) * 1400 * time.Millisecond)
			r := reports.BoardRow{Serial: fmt.Sprintf("SN%07d", i), EKPublicSHA256: hex.EncodeToString(h[:]), TPMVendor: "IFX",
				TPMFirmware: "7.85.0.0", Result: reports.ResultProvisioned, Started: start,
				Finished: start.Add(11 * time.Second), CycleTime: 11*time.Second + time.Duration(i%97)*10*time.Millisecond}
			switch {
			case i%50 == 7:
				r.Result, r.ReasonCode, r.ReasonText = reports.ResultFailed, "ca_refused", "the CA refused the enrollment: ek_untrusted"
			case i%200 == 13:
				r.Result, r.ReasonCode, r.ReasonText = reports.ResultStopped, "ek_serial_conflict", "EK already bound to another serial"
			default:
				r.IAKCertSerial, r.IDevIDCertSerial = fmt.Sprintf("%032x", i*2+1), fmt.Sprintf("%032x", i*2+2)
			}
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	bw := bufio.NewWriter(w)
	if err := reports.WritePDF(bw, info, rows, reports.AuditInfo{EventCount: int64(n) * 40, ChainHead: hex.EncodeToString(make([]byte, 32)), ChainVerified: true}, reports.Options{}); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// EKListEntries makes n EK list entries with distinct P-256 EKs: the marshalled TPMT_PUBLIC of the
// TCG L-2 template with the key's point and its SHA-256, as the station exports them (without the EK
// certificate, which the export also accepts alone or beside the public; signing 100,000 vendor
// certificates would dominate the set-up, not the export).
func EKListEntries(n int) ([]signed.EKListEntry, error) {
	tmpl, err := provisioning.EKTemplate(provisioning.EKP256)
	if err != nil {
		return nil, err
	}
	out := make([]signed.EKListEntry, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				k, err := ecdh.P256().GenerateKey(rand.Reader)
				if err == nil {
					var e *signed.EKListEntry
					if e, err = ekEntry(tmpl, k.PublicKey(), i); err == nil {
						out[i] = *e
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

func ekEntry(t tpm2.TPMTPublic, pub *ecdh.PublicKey, i int) (*signed.EKListEntry, error) {
	raw := pub.Bytes()
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}})
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, err
	}
	h, err := signed.EKPublicSHA256(key)
	if err != nil {
		return nil, err
	}
	return &signed.EKListEntry{Serial: fmt.Sprintf("SN%07d", i), EKPublic: tpm2.Marshal(t), EKPublicSHA256: hex.EncodeToString(h[:]),
		TPMManufacturer: "IFX", TPMModel: "SLB9670", TPMFirmware: "7.85.0.0"}, nil
}

// WriteEKListBench writes entries as an EK list in format and returns how long it took.
func WriteEKListBench(w io.Writer, format string, entries []signed.EKListEntry) (time.Duration, error) {
	i := 0
	bw := bufio.NewWriterSize(w, 1<<16)
	start := time.Now()
	err := signed.WriteEKList(bw, format, signed.EKListHeader{Batch: "BENCH-EK", Product: "default", Station: "bench",
		Created: time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC), Entries: len(entries)}, func() (*signed.EKListEntry, error) {
		if i == len(entries) {
			return nil, io.EOF
		}
		i++
		return &entries[i-1], nil
	})
	if err == nil {
		err = bw.Flush()
	}
	return time.Since(start), err
}

// devNull counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
