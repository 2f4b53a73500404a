package tpm_test

import (
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
)

// CKM_AES_CCM is built on TPM2_EncryptDecrypt2 in CBC and CTR mode: the
// TPM under test must list both (TPM_CAP_ALGS) as symmetric modes.
func TestTPMHasCBCAndCTR(t *testing.T) {
	tr := swtpmtest.Start(t)
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: uint32(tpm2.TPMAlgCTR), PropertyCount: 1}.Execute(tr)
	require.NoError(t, err)
	algs, err := rsp.CapabilityData.Data.Algorithms()
	require.NoError(t, err)
	rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: uint32(tpm2.TPMAlgCBC), PropertyCount: 1}.Execute(tr)
	require.NoError(t, err)
	cbc, err := rsp.CapabilityData.Data.Algorithms()
	require.NoError(t, err)
	found := map[tpm2.TPMAlgID]bool{}
	for _, a := range append(algs.AlgProperties, cbc.AlgProperties...) {
		if a.AlgProperties.Symmetric && a.AlgProperties.Encrypting {
			found[a.Alg] = true
		}
	}
	require.True(t, found[tpm2.TPMAlgCTR], "TPM_ALG_CTR")
	require.True(t, found[tpm2.TPMAlgCBC], "TPM_ALG_CBC")
}
