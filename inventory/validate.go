package inventory

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxText bounds identifiers (serials, batch ids, station names, step names, kinds).
const maxText = 200

// checkText refuses identifiers a person could not read back from a label or a report: empty when
// required, too long, not UTF-8, or holding control characters (PostgreSQL TEXT cannot even store NUL).
func checkText(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%w: %s is empty", ErrInvalid, field)
	case len(v) > maxText:
		return fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalid, field, len(v), maxText)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrInvalid, field, v)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%w: %s %q holds control characters", ErrInvalid, field, v)
	}
	return nil
}

// checkFreeText allows longer text (reasons, details) but still no NUL and valid UTF-8.
func checkFreeText(field, v string) error {
	switch {
	case len(v) > 64<<10:
		return fmt.Errorf("%w: %s is %d bytes long, at most 64 KiB allowed", ErrInvalid, field, len(v))
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, field)
	case strings.ContainsRune(v, 0):
		return fmt.Errorf("%w: %s holds a NUL byte", ErrInvalid, field)
	}
	return nil
}

// normEKHash lowercases and checks an EK public key hash: 64 hex digits.
func normEKHash(v string) (string, error) {
	v = strings.ToLower(v)
	if len(v) != 64 || strings.IndexFunc(v, func(r rune) bool { return !strings.ContainsRune("0123456789abcdef", r) }) >= 0 {
		return "", fmt.Errorf("%w: EK public key hash %q is not 64 hex digits (SHA-256)", ErrInvalid, v)
	}
	return v, nil
}

func checkKind(k KeyKind) error {
	if k != KindIAK && k != KindIDevID {
		return fmt.Errorf("%w: key kind %q, want iak or idevid", ErrInvalid, k)
	}
	return nil
}
