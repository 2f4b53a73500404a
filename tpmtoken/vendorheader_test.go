package tpmtoken_test

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// module/tpm11.h, the C header installed for applications, names every
// vendor attribute with the value the token uses.
func TestVendorHeader(t *testing.T) {
	h, err := os.ReadFile("../module/tpm11.h")
	require.NoError(t, err)
	want := map[string]ck.AttributeType{
		"CKA_TPM11_ATTESTATION":      tpmtoken.CKA_TPM11_ATTESTATION,
		"CKA_TPM11_PCR_POLICY":       tpmtoken.CKA_TPM11_PCR_POLICY,
		"CKA_TPM11_POLICY_AUTHORITY": tpmtoken.CKA_TPM11_POLICY_AUTHORITY,
		"CKA_TPM11_POLICY":           tpmtoken.CKA_TPM11_POLICY,
		"CKA_TPM11_PORTABLE":         tpmtoken.CKA_TPM11_PORTABLE,
	}
	got := map[string]ck.AttributeType{}
	for _, m := range regexp.MustCompile(`(?m)^#define (CKA_TPM11_\w+)\s+\(CKA_VENDOR_DEFINED \| 0x([0-9A-Fa-f]+)UL\)`).FindAllStringSubmatch(string(h), -1) {
		v, err := strconv.ParseUint(m[2], 16, 32)
		require.NoError(t, err)
		got[m[1]] = ck.AttributeType(0x80000000 | v)
	}
	require.Equal(t, want, got)
}
