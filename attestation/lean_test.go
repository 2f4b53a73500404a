package attestation_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The PKCS#11 module links none of the verifier's side: not this
// package, go-attestation, or a CBOR library (issue 20's lean library).
func TestModuleLinksNoVerifier(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/tpm11/tpm11/module").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/tpm11/tpm11/attestation", "github.com/google/go-attestation", "github.com/fxamacker/cbor"} {
			require.False(t, strings.HasPrefix(dep, banned), "libtpm11.so links %s", dep)
		}
	}
	require.Contains(t, string(out), "github.com/tpm11/tpm11/tpmtoken", "go list answered for another package")
}
