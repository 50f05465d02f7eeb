package station_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"
	_ "github.com/lib/pq"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testdb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/station"
)

// testCA is the real upstream CA of fixturestest.StartCA, copied into a value a test may alter (a
// station pointed at a dead URL) without touching the running CA.
type testCA struct {
	URL       string
	ClientTLS *tls.Config
	Store     *ca.Store
	Root      *x509.Certificate
	Issuing   *x509.Certificate
}

// startCA serves the CA trusting vendorRoot (and vendorIntermediates) for EK certificates, its state in dbURL.
func startCA(t testing.TB, dbURL string, vendorRoot *x509.Certificate, vendorIntermediates ...*x509.Certificate) *testCA {
	t.Helper()
	c := fixturestest.StartCA(t, fixturestest.CAOptions{DBURL: dbURL,
		VendorRoots: []*x509.Certificate{vendorRoot}, VendorIntermediates: vendorIntermediates})
	return &testCA{URL: c.URL, ClientTLS: c.ClientTLS, Store: c.Store, Root: c.PKI.Root.Cert, Issuing: c.PKI.Issuing.Cert}
}

func (c *testCA) client() *provisioning.Client { return provisioning.NewClient(c.URL, c.ClientTLS) }

// dbURLs are the two inventory engines every station test runs against.
func dbURLs(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string {
			return testdb.SQLiteURL(t, "inventory.db")
		},
		"postgres": func(t *testing.T) string { return pgSchemaURL(t) },
	}
}

// pgSchemaURL is a PostgreSQL URL with a fresh schema of its own for one test.
func pgSchemaURL(t *testing.T) string { return testdb.PostgresURL(t, "st") }

// newStation wires a station on a real inventory and the test CA.
func newStation(t *testing.T, dbURL string, c *testCA, opts ...func(*station.Config)) (*station.Station, *inventory.Store) {
	t.Helper()
	inv, err := inventory.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	cfg := station.Config{
		StationID: "station-test",
		Inventory: inv,
		CA:        c.client(),
		Open:      func(addr string) (transport.TPMCloser, error) { return fixtures.Open(addr) },
		Timed:     func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	st, err := station.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, inv
}

func (c *testCA) issuing(t *testing.T, cert *x509.Certificate) []byte {
	if err := cert.CheckSignatureFrom(c.Issuing); err != nil {
		t.Fatalf("certificate not issued by the issuing CA: %v", err)
	}
	return c.Issuing.Raw
}
