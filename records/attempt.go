package records

// AttemptCertificates picks the IAK and IDevID certificates of one attempt out of a board's certificates
// of every attempt (nil where that attempt has none). Only the current attempt's certificates describe the
// board: a retry, resume or rework starts a new attempt, and the inventory keeps at most one certificate of
// each kind per attempt.
func AttemptCertificates(certs []Certificate, attempt int) (iak, idevid *Certificate) {
	for i := range certs {
		c := &certs[i]
		if c.Attempt != attempt {
			continue
		}
		switch c.Kind {
		case KindIAK:
			iak = c
		case KindIDevID:
			idevid = c
		}
	}
	return iak, idevid
}
