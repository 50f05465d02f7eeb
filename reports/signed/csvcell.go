package signed

// isFormulaCell reports whether a spreadsheet would read a CSV cell as a formula (OWASP "CSV
// Injection"): it starts with = + - @, a tab or a carriage return.
func isFormulaCell(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// Neutralise prefixes a formula cell with a single quote so spreadsheets show it as text. Readers undo
// nothing: the quoted cell is the data, and it is what the signature covers.
func Neutralise(s string) string {
	if isFormulaCell(s) {
		return "'" + s
	}
	return s
}
