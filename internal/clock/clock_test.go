package clock

import (
	"testing"
	"time"
)

func TestParseShift(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "+87600h": 87600 * time.Hour, "-87600h": -87600 * time.Hour} {
		if got := parseShift(in); got != want {
			t.Errorf("parseShift(%q) = %v, want %v", in, got, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a bad shift did not panic")
		}
	}()
	parseShift("ten years")
}

// TestNowFollowsShift holds Now to the shift this test binary was linked with.
func TestNowFollowsShift(t *testing.T) {
	if d := time.Until(Now()) - offset; d > time.Second || d < -time.Second {
		t.Fatalf("Now is %v away from time.Now plus the shift %v", d, offset)
	}
}
