package inventory

import "testing"

// EngineNames and FreshURL give the external tests (package inventory_test, which may import
// inventorytest) the fresh databases the suite's own tests use.
var EngineNames = []string{"sqlite", "postgres"}

func FreshURL(t testing.TB, engine string) string {
	for _, e := range engines {
		if e.name == engine {
			return e.fresh(t)
		}
	}
	t.Fatalf("no engine %s", engine)
	return ""
}
