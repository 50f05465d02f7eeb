package provisioning

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PathWitness takes a station's signed audit chain head (a checkpoint) and answers the heads the CA holds
// for that station (docs/protocol.md, "Witness").
const PathWitness = "/v1/witness"

// MaxWitnessRequestBytes bounds a witness request: one checkpoint and its signature file (which carries
// the station's certificate chain).
const MaxWitnessRequestBytes = 32 << 10

// MaxWitnessedHeads is how many of a station's heads, newest first, the CA answers.
const MaxWitnessedHeads = 100

// CheckpointFormat is the first line of a checkpoint body.
const CheckpointFormat = "tpmline-audit-checkpoint/1"

// Checkpoint is a station's audit chain head at a moment: the seq and hash of the chain's last event. Its
// body, signed with the station key, is what the CA witnesses, in the manner of a transparency log's
// signed tree head.
type Checkpoint struct {
	Station string
	Seq     int64
	Hash    string // lowercase hex SHA-256, as the inventory's events carry
	Time    time.Time
}

// Body is the checkpoint's canonical text: five lines, each "name value", after the format line.
func (c *Checkpoint) Body() []byte {
	return []byte(fmt.Sprintf("%s\nstation %s\nseq %d\nhash %s\ntime %s\n", CheckpointFormat, c.Station, c.Seq, c.Hash,
		c.Time.UTC().Format(time.RFC3339Nano)))
}

// ParseCheckpoint reads a body Body wrote, and only that: it must come out of Body again byte for byte.
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) != 6 || lines[5] != "" || lines[0] != CheckpointFormat {
		return nil, fmt.Errorf("checkpoint: not a %s body", CheckpointFormat)
	}
	field := func(i int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], name+" ")
		if !ok {
			return "", fmt.Errorf("checkpoint: line %d is not %q", i+1, name)
		}
		return v, nil
	}
	var c Checkpoint
	var err error
	var seq, t string
	if c.Station, err = field(1, "station"); err != nil {
		return nil, err
	}
	if seq, err = field(2, "seq"); err != nil {
		return nil, err
	}
	if c.Seq, err = strconv.ParseInt(seq, 10, 64); err != nil || c.Seq <= 0 {
		return nil, fmt.Errorf("checkpoint: seq %q is not a positive integer", seq)
	}
	if c.Hash, err = field(3, "hash"); err != nil {
		return nil, err
	}
	if len(c.Hash) != 64 || strings.Trim(c.Hash, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("checkpoint: hash is not 64 lowercase hex digits")
	}
	if t, err = field(4, "time"); err != nil {
		return nil, err
	}
	if c.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
		return nil, fmt.Errorf("checkpoint: time %q: %v", t, err)
	}
	if c.Station == "" || !bytes.Equal(c.Body(), b) {
		return nil, fmt.Errorf("checkpoint: not in canonical form")
	}
	return &c, nil
}

// WitnessRequest carries a checkpoint body and its detached signature by the station key (the .sig format
// of reports/signed), or, with neither, asks only for the heads the CA holds.
type WitnessRequest struct {
	Checkpoint []byte `json:"checkpoint,omitempty"`
	Signature  []byte `json:"signature,omitempty"`
}

// WitnessedHead is one checkpoint the CA holds for the asking station.
type WitnessedHead struct {
	Seq        int64     `json:"seq"`
	Hash       string    `json:"hash"`
	SignedAt   time.Time `json:"signed_at"`
	ReceivedAt time.Time `json:"received_at"`
}

// WitnessResponse lists the station's witnessed heads, newest (highest seq) first, at most
// MaxWitnessedHeads.
type WitnessResponse struct {
	Heads []WitnessedHead `json:"heads"`
}

// Witness sends a checkpoint (or an empty request, to list) to the CA (POST PathWitness).
func (c *Client) Witness(ctx context.Context, req *WitnessRequest) (*WitnessResponse, error) {
	var res WitnessResponse
	if err := c.postLimit(ctx, PathWitness, req, &res, MaxWitnessRequestBytes); err != nil {
		return nil, err
	}
	return &res, nil
}

// Witness refusals.
const (
	CodeCheckpointInvalid ErrorCode = "checkpoint_invalid" // 422 unparseable, another station's, or its signature does not verify
	CodeWitnessConflict   ErrorCode = "witness_conflict"   // 409 a different hash at a witnessed seq, or a head behind the last one
)
