package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/tui"
)

// simBoard is a simulated board on the bench: a board-agent process serving its own in-process TPM
// simulator (the simulator is one per process, so each board needs its own), manufactured by the demo's
// simulated TPM vendor. Seed fixes the simulator's hierarchy seeds: the same seed is the same TPM (EK).
type simBoard struct {
	Addr string // relay://127.0.0.1:PORT
	Seed int64
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited
}

// boardAgentPath finds the board-agent binary beside this one, then on PATH.
func boardAgentPath() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "board-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("board-agent")
	if err != nil {
		return "", fmt.Errorf("board-agent not found beside station or on PATH: run 'make build' first")
	}
	return p, nil
}

// newSeed picks a simulator seed (never 0, which board-agent reads as "random").
func newSeed() int64 {
	for {
		if s := rand.Int64(); s != 0 {
			return s
		}
	}
}

// startSimBoard starts one simulated board with the given seed and waits for its ready line. The process
// lives until ctx ends or Stop.
func startSimBoard(ctx context.Context, agent, vendorDir string, seed int64) (*simBoard, error) {
	cmd := exec.CommandContext(ctx, agent, "--tpm", "sim", "--vendor-dir", vendorDir, "--listen", "127.0.0.1:0",
		"--sim-seed", fmt.Sprint(seed))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a simulated board: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.LastIndex(line, " on "); i >= 0 && strings.Contains(line, "serving") {
				select {
				case ready <- strings.TrimSpace(line[i+4:]):
				default:
				}
			}
		}
	}()
	b := &simBoard{Seed: seed, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.done) }()
	select {
	case addr := <-ready:
		b.Addr = "relay://" + addr
		return b, nil
	case <-b.done:
		return nil, fmt.Errorf("simulated board exited before it was ready: %s", strings.TrimSpace(stderr.String()))
	case <-time.After(60 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-b.done
	return nil, fmt.Errorf("simulated board did not come up within 60 s")
}

func (b *simBoard) Stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// syncBuffer collects a child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4096 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// demoFixture is the demo's bench for the terminal: one simulated board per slot, replaced by a fresh
// board (a new seed) for every new part, and able to put a clone of the last passed part (its seed again)
// into a slot.
type demoFixture struct {
	ctx       context.Context // the boards' lifetime
	agent     string
	vendorDir string
	ids       []int

	mu     sync.Mutex
	boards map[int]*simBoard
	// last is the last board that passed: its seed and the serial it was provisioned under.
	lastSeed   int64
	lastSerial string
}

var (
	_ tui.Fixture = (*demoFixture)(nil)
	_ tui.Cloner  = (*demoFixture)(nil)
)

func newDemoFixture(ctx context.Context, agent, vendorDir string, slots int) *demoFixture {
	f := &demoFixture{ctx: ctx, agent: agent, vendorDir: vendorDir, boards: map[int]*simBoard{}}
	for i := 1; i <= slots; i++ {
		f.ids = append(f.ids, i)
	}
	return f
}

func (f *demoFixture) Slots() []int { return f.ids }

func (f *demoFixture) TPM(slot int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.boards[slot]; b != nil {
		return b.Addr
	}
	return fmt.Sprintf("relay://no-board-in-slot-%d", slot)
}

// NewPart replaces the slot's board with a freshly manufactured one.
func (f *demoFixture) NewPart(ctx context.Context, slot int) error {
	return f.put(ctx, slot, newSeed())
}

// ClonePart puts a board with the last passed board's seed (the same TPM, the same EK) into the slot.
func (f *demoFixture) ClonePart(ctx context.Context, slot int) (string, error) {
	f.mu.Lock()
	seed, serial := f.lastSeed, f.lastSerial
	f.mu.Unlock()
	if seed == 0 {
		return "", fmt.Errorf("no board has passed yet in this session: provision one, then clone it")
	}
	if err := f.put(ctx, slot, seed); err != nil {
		return "", err
	}
	return fmt.Sprintf("clone of the TPM provisioned as %s: scan a new serial to see the clone refused", serial), nil
}

func (f *demoFixture) put(ctx context.Context, slot int, seed int64) error {
	f.mu.Lock()
	old := f.boards[slot]
	delete(f.boards, slot)
	f.mu.Unlock()
	old.Stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := startSimBoard(f.ctx, f.agent, f.vendorDir, seed)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.boards[slot] = b
	f.mu.Unlock()
	return nil
}

// observe remembers the board of every pass, for ClonePart.
func (f *demoFixture) observe(e station.Event) {
	if e.Kind != station.EvPassed {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.boards[e.Slot]; b != nil {
		f.lastSeed, f.lastSerial = b.Seed, e.Serial
	}
}

// Close stops every board.
func (f *demoFixture) Close() {
	f.mu.Lock()
	var bs []*simBoard
	ids := make([]int, 0, len(f.boards))
	for id := range f.boards {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		bs = append(bs, f.boards[id])
	}
	f.boards = map[int]*simBoard{}
	f.mu.Unlock()
	for _, b := range bs {
		b.Stop()
	}
}

// staticFixture is a configured station's bench: each slot's TPM address comes from the config, and the
// operator swaps boards by hand.
type staticFixture struct {
	ids   []int
	addrs map[int]string
}

var _ tui.Fixture = (*staticFixture)(nil)

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
