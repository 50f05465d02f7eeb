package provisioning

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// PathRevoke takes a station's request to revoke the certificates the CA issued to one of its boards, for
// an RMA or a deprovision (docs/protocol.md, "Revoke").
const PathRevoke = "/v1/revoke"

// Error codes of PathRevoke.
const (
	CodeBoardUnknown  ErrorCode = "board_unknown"  // 404 the CA issued no certificate to that serial
	CodeRevokeRefused ErrorCode = "revoke_refused" // 403 the board's certificates were issued to another station
)

// RevokeBoardRequest asks the CA to revoke every certificate it issued to Serial through the asking
// station, with an RFC 5280 CRLReason (0..10, not 7 or 8).
type RevokeBoardRequest struct {
	Serial string `json:"serial"`
	Reason int    `json:"reason"`
}

// RevokeBoardResult lists the certificate serials (lowercase hex) revoked now and those revoked before.
type RevokeBoardResult struct {
	Revoked []string `json:"revoked"`
	Already []string `json:"already"`
}

// Revoker is a CA that revokes a station's board certificates (*Client is one).
type Revoker interface {
	RevokeBoard(ctx context.Context, req *RevokeBoardRequest) (*RevokeBoardResult, error)
}

// RevokeBoard asks the CA to revoke the board's certificates (POST PathRevoke).
func (c *Client) RevokeBoard(ctx context.Context, req *RevokeBoardRequest) (*RevokeBoardResult, error) {
	var res RevokeBoardResult
	if err := c.post(ctx, PathRevoke, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// crlReasonNames are RFC 5280 section 5.3.1's CRLReason names (7 is unused).
var crlReasonNames = map[string]int{
	"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3, "superseded": 4,
	"cessationOfOperation": 5, "certificateHold": 6, "removeFromCRL": 8, "privilegeWithdrawn": 9, "aACompromise": 10,
}

// ParseCRLReason reads an RFC 5280 CRLReason by name (case-insensitive) or number, for a revocation: the
// station's --crl-reason and the CA's revoke commands. removeFromCRL (8) is refused: the CA issues full CRLs.
// It lives here rather than in provisioning/ca so that the station's board rma does not link the CA.
func ParseCRLReason(s string) (int, error) {
	for name, code := range crlReasonNames {
		if strings.EqualFold(s, name) || s == fmt.Sprint(code) {
			if code == 8 {
				return 0, errors.New("removeFromCRL is for delta CRLs only; this CA issues full CRLs")
			}
			return code, nil
		}
	}
	names := make([]string, 0, len(crlReasonNames))
	for n := range crlReasonNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, fmt.Errorf("reason %q is not an RFC 5280 CRLReason (%s)", s, strings.Join(names, ", "))
}
