package signed

// TPM algorithm and curve identifiers the tests marshal EK public areas with, TCG TPM 2.0 Library Part 2
// (Structures), 6.3 TPM_ALG_ID and 6.4 TPM_ECC_CURVE.
const (
	tpmAlgRSA  = 0x0001
	tpmAlgNull = 0x0010
	tpmAlgECC  = 0x0023
	tpmECCP256 = 0x0003
)
