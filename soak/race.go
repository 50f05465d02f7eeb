package soak

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/tpmline/tpmline/bench"
	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/provisioning"
)

// RaceConfig is the two-CA race: two `upstream-ca serve` processes of one CA directory on one PostgreSQL
// database, and boards enrolled through both at the same moment.
type RaceConfig struct {
	Dir    string
	CABin  string
	PG     *PG // the cluster to make the race's database in
	Vendor *fixtures.Manufacturer
	Trials int // per case; 0 means 10
	Log    func(format string, args ...any)
}

// RaceCase names a race.
type RaceCase string

// The races across CA processes.
const (
	// RaceSameEK: one EK enrolled under two serials, one through each CA, both rounds at once.
	RaceSameEK RaceCase = "same EK, two serials"
	// RaceSameSerial: one serial enrolled with two EKs, one through each CA.
	RaceSameSerial RaceCase = "same serial, two EKs"
	// RaceSameBoard: the same board (EK, serial, keys) through both CAs, as a station that retried on the
	// other CA would: one issues, the other refuses or answers the resume with the same certificates.
	RaceSameBoard RaceCase = "same board through both"
)

// RaceResult counts, per case, the trials and how they ended.
type RaceResult struct {
	Trials     map[RaceCase]int
	Won        map[RaceCase]int // trials with exactly one winner (or one issued pair, for RaceSameBoard)
	Refusals   map[RaceCase]map[string]int
	Violations []string
}

// RunRace starts the two CA processes and runs every case cfg.Trials times.
func RunRace(ctx context.Context, cfg RaceConfig) (*RaceResult, error) {
	if cfg.Trials == 0 {
		cfg.Trials = 10
	}
	if err := cfg.PG.CreateDB(ctx, "race"); err != nil {
		return nil, err
	}
	dir, err := InitCA(ctx, cfg.CABin, cfg.Dir, append(cfg.Vendor.RootPEM(), cfg.Vendor.IntermediatePEM()...))
	if err != nil {
		return nil, err
	}
	// One after the other: the first migrates the database, the second finds it migrated.
	var cas [2]*CA
	for i := range cas {
		if cas[i], err = dir.Serve(cfg.PG.URL("race"), filepath.Join(cfg.Dir, fmt.Sprintf("ca%d.log", i+1))); err != nil {
			return nil, err
		}
		defer cas[i].Stop()
	}
	clients := [2]*provisioning.Client{cas[0].Client(), cas[1].Client()}
	res := &RaceResult{Trials: map[RaceCase]int{}, Won: map[RaceCase]int{}, Refusals: map[RaceCase]map[string]int{}}
	violate := func(format string, args ...any) {
		res.Violations = append(res.Violations, fmt.Sprintf(format, args...))
	}
	for t := range cfg.Trials {
		for _, rc := range []RaceCase{RaceSameEK, RaceSameSerial, RaceSameBoard} {
			var a, b *bench.SoftBoard
			switch rc {
			case RaceSameEK:
				if a, err = bench.NewSoftBoard(cfg.Vendor, fmt.Sprintf("RACE-EK-%03d-A", t), nil); err != nil {
					return nil, err
				}
				c := *a // the same TPM (EK and keys) under another label
				c.Serial = fmt.Sprintf("RACE-EK-%03d-B", t)
				b = &c
			case RaceSameSerial:
				serial := fmt.Sprintf("RACE-SN-%03d", t)
				if a, err = bench.NewSoftBoard(cfg.Vendor, serial, nil); err != nil {
					return nil, err
				}
				if b, err = bench.NewSoftBoard(cfg.Vendor, serial, nil); err != nil {
					return nil, err
				}
			case RaceSameBoard:
				if a, err = bench.NewSoftBoard(cfg.Vendor, fmt.Sprintf("RACE-BD-%03d", t), nil); err != nil {
					return nil, err
				}
				c := *a
				b = &c
			}
			outs := raceBoth(ctx, clients, [2]*bench.SoftBoard{a, b})
			res.Trials[rc]++
			var won []int
			for i, o := range outs {
				if o.err == nil {
					won = append(won, i)
					continue
				}
				var pe *provisioning.Error
				if !errors.As(o.err, &pe) {
					violate("%s, trial %d: CA %d failed without a protocol refusal: %v", rc, t, i+1, o.err)
					continue
				}
				if res.Refusals[rc] == nil {
					res.Refusals[rc] = map[string]int{}
				}
				res.Refusals[rc][string(pe.Code)]++
				if pe.Code != provisioning.CodeEKSerialConflict {
					violate("%s, trial %d: CA %d refused with %s, not the documented %s", rc, t, i+1, pe.Code, provisioning.CodeEKSerialConflict)
				}
			}
			switch {
			case rc == RaceSameBoard && len(won) == 2:
				// Both answered: legal only as a resume, the same certificates from the one issuance.
				if !bytes.Equal(outs[0].certs.IAKCert, outs[1].certs.IAKCert) || !bytes.Equal(outs[0].certs.IDevIDCert, outs[1].certs.IDevIDCert) {
					violate("%s, trial %d: both CAs issued, with different certificates", rc, t)
				} else {
					res.Won[rc]++
				}
			case len(won) == 1:
				res.Won[rc]++
			default:
				violate("%s, trial %d: %d of 2 enrollments won", rc, t, len(won))
			}
		}
	}
	// What the CAs recorded: one EK, one serial, one certificate of each kind.
	db, err := sqldb.Open(ctx, cfg.PG.URL("race"), sqldb.Options{What: "CA database"})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var issued []caCert
	if err := db.R.SelectContext(ctx, &issued, qCACertificates); err != nil {
		return nil, err
	}
	perEK, perSerial := map[string]map[string]int{}, map[string]map[string]bool{}
	for _, c := range issued {
		ek := hex.EncodeToString(c.EK)
		if perEK[ek] == nil {
			perEK[ek] = map[string]int{}
		}
		perEK[ek][c.Board+"/"+c.Kind]++
		if perSerial[c.Board] == nil {
			perSerial[c.Board] = map[string]bool{}
		}
		perSerial[c.Board][ek] = true
	}
	for ek, m := range perEK {
		if len(m) != 2 {
			violate("race database: EK %s… holds certificates %v (want one IAK and one IDevID under one serial)", ek[:16], m)
		}
		for k, n := range m {
			if n != 1 {
				violate("race database: EK %s… has %d certificates %s", ek[:16], n, k)
			}
		}
	}
	for serial, eks := range perSerial {
		if len(eks) != 1 {
			violate("race database: serial %s holds certificates of %d EKs", serial, len(eks))
		}
	}
	if cfg.Log != nil {
		for _, rc := range []RaceCase{RaceSameEK, RaceSameSerial, RaceSameBoard} {
			cfg.Log("race: %s: %d of %d trials with one winner; refusals %v", rc, res.Won[rc], res.Trials[rc], res.Refusals[rc])
		}
	}
	return res, nil
}

type raceOutcome struct {
	certs *provisioning.Certificates
	err   error
}

// raceBoth enrolls boards[i] through clients[i], both rounds started together on both sides.
func raceBoth(ctx context.Context, clients [2]*provisioning.Client, boards [2]*bench.SoftBoard) [2]raceOutcome {
	var outs [2]raceOutcome
	var chs [2]*provisioning.Challenge
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			<-start
			chs[i], outs[i].err = clients[i].Enroll(ctx, boards[i].EnrollRequest("default"))
		})
	}
	close(start)
	wg.Wait()
	var answers [2]*provisioning.ActivateRequest
	for i := range 2 {
		if outs[i].err == nil {
			answers[i], outs[i].err = boards[i].Answer(chs[i])
		}
	}
	start = make(chan struct{})
	for i := range 2 {
		if answers[i] == nil {
			continue
		}
		wg.Go(func() {
			<-start
			outs[i].certs, outs[i].err = clients[i].Activate(ctx, answers[i])
		})
	}
	close(start)
	wg.Wait()
	return outs
}
