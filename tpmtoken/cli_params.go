package tpmtoken

import "github.com/tpm11/tpm11/tpmtoken/mech"

// Mechanism parameters, for the tpm11 command (which imports only this
// package of the token's).
type (
	OAEPParams = mech.OAEPParams
	PSSParams  = mech.PSSParams
	CTRParams  = mech.CTRParams
	BytesParam = mech.Bytes
)
