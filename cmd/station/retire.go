package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

func cmdBoardRMA(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	return boardRetire(ctx, g, fs, args, records.EventBoardRMA, "unspecified")
}

func cmdBoardDeprovision(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	return boardRetire(ctx, g, fs, args, records.EventBoardDeprovisioned, "cessationOfOperation")
}

// boardRetire wires station.Retire: flags, the CA client, one line per step.
func boardRetire(ctx context.Context, g *globals, fs *flag.FlagSet, args []string, kind, defaultCRL string) error {
	reason := fs.String("reason", "", "why the board leaves service, recorded in the audit trail (required)")
	crl := fs.String("crl-reason", defaultCRL, "the RFC 5280 `REASON` the CA records (name or number: keyCompromise, superseded, cessationOfOperation, ...)")
	addr := fs.String("tpm", "", "the board's TPM `ADDR` when it is on the fixture: its keys and certificates are removed (without it, recorded as not removed)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one board serial")
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("--reason is required: say why the board leaves service")
	}
	crlReason, err := provisioning.ParseCRLReason(*crl)
	if err != nil {
		return usagef("--crl-reason: %v", err)
	}
	if *addr != "" {
		if err := checkTPM("--tpm", *addr); err != nil {
			return err
		}
	}
	serial := fs.Arg(0)
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		client, err := caClient(s)
		if err != nil {
			return err
		}
		st, err := newStation(s, inv, client, nil, nil)
		if err != nil {
			return err
		}
		sn := printable(serial)
		out, err := st.Retire(ctx, station.RetireJob{Serial: serial, Kind: kind, Reason: *reason, CRLReason: crlReason, TPM: *addr})
		switch {
		case errors.Is(err, records.ErrBoardNotFound), errors.Is(err, records.ErrBoardInProgressElsewhere):
			fmt.Fprintf(g.stderr, "board %s: %v\n", sn, err)
			return errFailed
		case err != nil && out == nil:
			return err
		}
		for _, l := range out.Lines() {
			w := g.stdout
			if l.Bad {
				w = g.stderr
			}
			fmt.Fprintf(w, "board %s: %s\n", sn, l.Text)
		}
		if err != nil {
			return err
		}
		if !out.OK() {
			return errFailed
		}
		return nil
	})
}
