package tpm

import (
	"errors"

	"github.com/google/go-tpm/tpm2"
)

// Caps is what the TPM can do among the key kinds the token offers, asked
// of the TPM itself (TPM2_TestParms): TPMs differ, swtpm makes RSA-3072
// where the reference simulator stops at 2048, none here makes RSA-4096.
type Caps struct {
	RSABits []int
	Curves  []tpm2.TPMECCCurve
	AESBits []int
	// PQC is what the TPM has of v1.85's ML-DSA and ML-KEM (pqc_commands.go).
	PQC PQCCaps
}

// Probe asks the TPM which of the candidate sizes (the token's own list)
// it supports. A size the TPM refuses (TPM_RC_VALUE, _CURVE, _KEY_SIZE...)
// is left out; a failure to reach the TPM is an error, so nothing is
// concluded from it.
func (e *Engine) Probe(cand Caps) (Caps, error) {
	var fail error
	ok := func(p tpm2.TPMTPublicParms) bool {
		_, err := tpm2.TestParms{Parameters: p}.Execute(e.tr())
		var rc tpm2.TPMRC
		if err != nil && !errors.As(err, &rc) && fail == nil {
			fail = err
		}
		return err == nil
	}
	var c Caps
	for _, bits := range cand.RSABits {
		if ok(tpm2.TPMTPublicParms{Type: tpm2.TPMAlgRSA, Parameters: RSAKeyTemplate(bits).Parameters}) {
			c.RSABits = append(c.RSABits, bits)
		}
	}
	for _, curve := range cand.Curves {
		if ok(tpm2.TPMTPublicParms{Type: tpm2.TPMAlgECC, Parameters: ECCKeyTemplate(curve).Parameters}) {
			c.Curves = append(c.Curves, curve)
		}
	}
	for _, bits := range cand.AESBits {
		if ok(tpm2.TPMTPublicParms{Type: tpm2.TPMAlgSymCipher, Parameters: AESKeyTemplate(bits).Parameters}) {
			c.AESBits = append(c.AESBits, bits)
		}
	}
	if fail == nil {
		c.PQC, fail = e.ProbePQC()
	}
	return c, fail
}
