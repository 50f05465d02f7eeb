package provisioning

import "context"

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
