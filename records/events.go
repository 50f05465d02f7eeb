package records

// Event kinds of the audit trail: those the inventory writes itself and those the station appends.
const (
	EventBatchOpened      = "batch.opened"
	EventBatchClosed      = "batch.closed"
	EventBoardClaimed     = "board.claimed"
	EventBoardResumed     = "board.resumed"
	EventBoardRetried     = "board.retried"
	EventBoardReworked    = "board.reworked"
	EventClaimRefused     = "board.claim_refused"
	EventBoardRefused     = "board.refused" // the station turned a board away before the inventory check
	EventBoardTPMInfo     = "board.tpm_info"
	EventBoardEK          = "board.ek"
	EventStepStarted      = "step.started"
	EventStepDone         = "step.done"
	EventStepFailed       = "step.failed"
	EventKeySaved         = "key.saved"
	EventCertSaved        = "cert.saved"
	EventBoardProvisioned = "board.provisioned"
	EventBoardFailed      = "board.failed"
	EventBoardStopped     = "board.stopped"
	EventEKListExported   = "ek_list.exported"
	EventEKListPushed     = "ek_list.pushed"
	// A board taken out of service after the line: returned for repair (RMA) or retired (deprovision).
	// The inventory writes these (the board is stopped, reason code ReasonRMA or ReasonDeprovisioned);
	// the station appends the outcome of each step after it.
	EventBoardRMA           = "board.rma"
	EventBoardDeprovisioned = "board.deprovisioned"
	EventBoardCertsRevoked  = "board.certs_revoked"   // the CA revoked the board's certificates
	EventBoardRevokeFailed  = "board.revoke_failed"   // the CA could not be asked, or refused
	EventBoardTPMCleared    = "board.tpm_cleared"     // IAK and IDevID evicted, certificate indices undefined
	EventBoardTPMNotCleared = "board.tpm_not_cleared" // the board was not on the fixture, or the TPM refused
	// EventEKIdentityMigrated is written by inventory migration 0002, one per board it re-keyed: the
	// board's EK identity before (SHA-256 of the TPMT_PUBLIC) and after (SHA-256 of the EK's SPKI, or ""
	// when the board had no EK recorded to derive it from).
	EventEKIdentityMigrated = "board.ek_identity_migrated"
)

// Reason codes of a board taken out of service (EventBoardRMA, EventBoardDeprovisioned).
const (
	ReasonRMA           = "rma"
	ReasonDeprovisioned = "deprovisioned"
)
