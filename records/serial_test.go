package records

import (
	"strings"
	"testing"
)

// TestCheckSerial has one case per rule of CheckSerial.
func TestCheckSerial(t *testing.T) {
	for _, ok := range []string{"SN-0001/a.b", "GW100 000123", "A'(+,)=?:", strings.Repeat("9", MaxSerialLen)} {
		if err := CheckSerial(ok); err != nil {
			t.Errorf("CheckSerial(%q) = %v", ok, err)
		}
	}
	for _, tc := range []struct{ s, want string }{
		{"", "missing"},
		{strings.Repeat("9", MaxSerialLen+1), "bound"},
		{"SN_1", "character '_'"},
		{"SN\n1", "character '\\n'"},
		{"SNé", "character"},
		{" SN1", "space"},
		{"SN1 ", "space"},
	} {
		if err := CheckSerial(tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckSerial(%q) = %v, want an error mentioning %q", tc.s, err, tc.want)
		}
	}
}
