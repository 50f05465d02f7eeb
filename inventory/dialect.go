package inventory

// dialect is what the inventory's SQL needs to know about the engine; sqldb.Dialect holds the rest.
type dialect struct {
	name string // "sqlite" or "postgres"
	// forUpdate is appended to a SELECT that must lock its rows until the transaction ends (see
	// sqldb.Dialect.ForUpdate).
	forUpdate string
}
