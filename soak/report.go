package soak

import (
	"fmt"
	"io"
	"sort"
)

// Print writes the run's counts: boards, faults injected by kind, recoveries, invariant violations.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "soak seed %d: %d boards on %d slots in %.1f s\n", r.Seed, r.Boards, r.Slots, r.Elapsed.Seconds())
	fmt.Fprintf(w, "  provisioned %d, failed with a reason %d", r.Provisioned, r.Failed)
	if len(r.FailedReasons) > 0 {
		fmt.Fprintf(w, " (%s)", countList(r.FailedReasons))
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "  faults injected:")
	for _, k := range FaultKinds {
		fmt.Fprintf(w, " %s %d", k, r.Faults[k])
	}
	fmt.Fprintf(w, "\n  station processes killed %d, relay connections cut %d, CA restarts %d, PostgreSQL restarts %d\n",
		r.StationKilled, r.RelayConnsCut, r.CARestarts, r.PGRestarts)
	fmt.Fprintf(w, "  recoveries: %d boards provisioned after a fault hit them; %d station runs in all, %d retries, %d reconciles resumed %d boards\n",
		r.Recoveries, r.Attempts, r.Retried, r.Reconciles, r.Resumed)
	fmt.Fprintf(w, "  station runs by exit and board state after: %s\n", countList(r.RunOutcomes))
	fmt.Fprintf(w, "  failed station runs by recorded reason: %s\n", countList(r.SeenReasons))
	fmt.Fprintf(w, "  CA certificates issued %d; audit chain verifies: %v\n", r.CACertificates, r.AuditOK)
	if r.Race != nil {
		for _, rc := range []RaceCase{RaceSameEK, RaceSameSerial, RaceSameBoard} {
			fmt.Fprintf(w, "  two CAs, %s: %d of %d trials with one winner; refusals: %s\n", rc, r.Race.Won[rc], r.Race.Trials[rc], countList(r.Race.Refusals[rc]))
		}
	}
	fmt.Fprintf(w, "  invariant violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "    %s\n", v)
	}
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, m[k])
	}
	return s
}
