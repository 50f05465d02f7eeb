package records

import (
	"errors"
	"fmt"
)

// MaxSerialLen bounds a board serial everywhere: the wire (provisioning.MaxSerialLen), the inventory, the
// certificate subject's serialNumber (X.520 ub-serial-number is 64).
const MaxSerialLen = 64

// CheckSerial is the one board serial syntax, which the CA enforces on enrollment and EK lists and the
// station and reports apply before anything leaves them: 1..MaxSerialLen characters of the X.520
// PrintableString set (the CA writes the serial into certificate subjects and the permanentIdentifier), not
// starting or ending with a space. A product profile may narrow it further (station.Profile.SerialPattern).
func CheckSerial(s string) error {
	if s == "" {
		return errors.New("serial is missing")
	}
	if len(s) > MaxSerialLen {
		return fmt.Errorf("serial is %d bytes, over the %d-byte bound", len(s), MaxSerialLen)
	}
	for i := 0; i < len(s); i++ {
		if !printableString(s[i]) {
			return fmt.Errorf("serial has character %q at offset %d; allowed are letters, digits, space and '()+,-./:=?", s[i], i)
		}
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return errors.New("serial starts or ends with a space")
	}
	return nil
}

// printableString is the X.520 PrintableString set (ITU-T X.680 41.4): what a subject serialNumber may hold.
func printableString(r byte) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	switch r {
	case ' ', '\'', '(', ')', '+', ',', '-', '.', '/', ':', '=', '?':
		return true
	}
	return false
}
