package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Diagnostics is what `tpm11 info` reports about the TPM behind the token.
type Diagnostics struct {
	Backend   string
	Simulated bool
	TPM       tpm.Info
	Caps      tpm.Caps
	Curves    []*Curve // Caps.Curves as the token knows them
	DA        tpm.DAState
	// Tokens says, for each token, whether it belongs to this TPM.
	Tokens []TokenTPM
}

// Diagnose asks the TPM about itself; it fails when there is no TPM.
func (l *Library) Diagnose() (Diagnostics, error) {
	if l.dev == nil {
		return Diagnostics{}, ck.Wrap(ck.CKR_TOKEN_NOT_PRESENT, l.devErr)
	}
	d := Diagnostics{Backend: l.dev.Spec, Simulated: l.dev.Simulated, TPM: l.tpmInfo(), Caps: l.caps().Caps}
	for _, id := range d.Caps.Curves {
		if c := mech.CurveOfTPM(id); c != nil {
			d.Curves = append(d.Curves, c)
		}
	}
	for _, id := range l.SlotList(false) {
		if r, err := l.TPMCheck(id); err == nil {
			d.Tokens = append(d.Tokens, r)
		}
	}
	var err error
	d.DA, err = do(l, 0, (*tpm.Engine).DAState)
	if err != nil {
		return d, err
	}
	return d, nil
}
