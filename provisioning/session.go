package provisioning

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Responses the TPM vouches for.
//
// Whatever carries the TPM's bytes (a relay, a cable, a board-agent) could answer in the TPM's place. A
// response is the TPM's own only when it carries an HMAC keyed by a secret the link cannot know. Vouch
// starts an HMAC session salted to the EK: the salt is encrypted to the EK public the CA verified (it
// matches the vendor's EK certificate, and credential activation proved the TPM holds its private part),
// so only that TPM can derive the session key. While the session is on, every command of this package
// that takes an authorisation (EvictControl, NV_DefineSpace, NV_Write, NV_WriteLock, NV_UndefineSpace,
// NV_Read) uses it instead of a password, and go-tpm refuses a response whose HMAC does not verify. What
// that buys, per recorded result:
//   - persist: EvictControl's command HMAC covers the transient key's Name and the persistent handle, so
//     a verified response means the TPM persisted exactly that key there;
//   - NV define, write, lock: the TPM answered, and the written bytes are in the command HMAC;
//   - NV read-back: NV_Read's response HMAC covers the data, and its command HMAC covers the index Name,
//     which hashes the index's public area (attributes WRITTEN and WRITELOCKED included), so the public
//     area NV_ReadPublic reported is the TPM's too;
//   - the EK: a link that swapped the EK could not decrypt the salt, so no later response would verify.
//
// Not covered: TPM2_ReadPublic of the persisted keys. go-tpm v0.9.8 needs a Name for every handle of a
// command with sessions, and its ReadPublic takes a bare handle, so it cannot carry an audit session; the
// persisted keys are vouched for by EvictControl above, and Inspect's ReadPublic stays a consistency check.
// An error response (TPM_RC_*) carries no HMAC in TPM 2.0, so a link can always make a command fail; it
// can never make one succeed.

// sessionNonceSize is the nonce size of the salted session: the digest size of its SHA-256 hash, the
// size TPM 2.0 Part 1 section 19.6.2 recommends.
const sessionNonceSize = 32

// ErrNotVouched marks a response that failed its session HMAC: it did not come from the TPM the CA
// verified.
var ErrNotVouched = errors.New("a TPM response failed its salted-session HMAC: something between the station and the TPM answered in its place")

// Vouch starts the salted HMAC session on ek (a loaded EK whose public the CA verified) and returns the
// connection to use from then on (tpm itself when it came from Cached) and the function that ends the
// session. Call end before flushing everything at the end of the board; commands after it use password
// authorisation again.
func Vouch(tpm transport.TPM, ek *Key) (transport.TPM, func() error, error) {
	if ek == nil || ek.Handle == 0 {
		return nil, nil, errors.New("starting the salted session: no EK loaded")
	}
	c, ok := tpm.(*cachedTPM)
	if !ok {
		c = &cachedTPM{TPM: tpm}
	}
	if c.session != nil {
		return nil, nil, errors.New("starting the salted session: one is already running on this connection")
	}
	sess, closeSess, err := tpm2.HMACSession(c.TPM, tpm2.TPMAlgSHA256, sessionNonceSize,
		tpm2.Auth(nil), tpm2.Salted(ek.Handle, ek.Public))
	if err != nil {
		return nil, nil, fmt.Errorf("starting the session salted to the EK: %w", err)
	}
	c.session = sess
	end := func() error {
		if c.session == nil {
			return nil
		}
		c.session = nil
		if err := closeSess(); err != nil && !errors.Is(err, tpm2.TPMRCHandle) {
			return fmt.Errorf("ending the salted session: %w", err)
		}
		return nil
	}
	return c, end, nil
}

// Vouched reports whether commands on tpm run in the salted session.
func Vouched(tpm transport.TPM) bool {
	c, ok := tpm.(*cachedTPM)
	return ok && c.session != nil
}

// authSession is the authorisation for an owner or index auth of empty authValue: the salted session
// when Vouch started one, else the empty password.
func authSession(tpm transport.TPM) tpm2.Session {
	if c, ok := tpm.(*cachedTPM); ok && c.session != nil {
		return c.session
	}
	return tpm2.PasswordAuth(nil)
}

// IsNotVouched reports whether err is a response that failed its session HMAC. go-tpm reports those as
// a plain error; this is the one place that knows its wording.
func IsNotVouched(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotVouched) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "incorrect authorization HMAC") || strings.Contains(msg, "validating auth session") ||
		strings.Contains(msg, "reading auth session")
}
