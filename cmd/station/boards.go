package main

import (
	"context"
	"sort"

	"github.com/tpmline/tpmline/station"
)

// staticFixture is a configured station's bench: each slot's TPM address comes from the config, and the
// operator swaps boards by hand.
type staticFixture struct {
	ids   []int
	addrs map[int]string
}

func newStaticFixture(slots []station.Slot) *staticFixture {
	f := &staticFixture{addrs: map[int]string{}}
	for _, s := range slots {
		f.ids = append(f.ids, s.ID)
		f.addrs[s.ID] = s.TPM
	}
	sort.Ints(f.ids)
	return f
}

func (f *staticFixture) Slots() []int                       { return f.ids }
func (f *staticFixture) TPM(slot int) string                { return f.addrs[slot] }
func (f *staticFixture) NewPart(context.Context, int) error { return nil }
