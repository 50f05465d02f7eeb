package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// simBoard is a simulated board on the bench: a board-agent process serving its own in-process TPM
// simulator (the simulator is one per process, so each board needs its own), manufactured by the demo's
// simulated TPM vendor.
type simBoard struct {
	Addr string // relay://127.0.0.1:PORT
	cmd  *exec.Cmd
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

// startSimBoard starts one simulated board and waits for its ready line.
func startSimBoard(ctx context.Context, agent, vendorDir string) (*simBoard, error) {
	cmd := exec.CommandContext(ctx, agent, "--tpm", "sim", "--vendor-dir", vendorDir, "--listen", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
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
	select {
	case addr := <-ready:
		return &simBoard{Addr: "relay://" + addr, cmd: cmd}, nil
	case <-time.After(60 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("simulated board did not come up within 60 s")
}

func (b *simBoard) Stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}
