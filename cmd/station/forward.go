package main

import "strings"

// needsFull says whether the command line asks for what only station-full has: a --tpm sim board, a
// --pdf report, or --metrics-listen. The headless build asks it (headless.go); it is in both builds so the default build's
// tests check it. Flags may come anywhere, with one dash or two, the value after = or as the next word.
// A false positive only costs the exec; a sim slot in a config file meets fixtures.ErrNoSimulator.
func needsFull(args []string) bool {
	for i, a := range args {
		if a == "--" {
			return false
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		switch name {
		case "tpm":
			if val == "sim" {
				return true
			}
		case "pdf":
			if val != "" {
				return true
			}
		case "metrics-listen":
			if val != "" {
				return true
			}
		}
	}
	return false
}
