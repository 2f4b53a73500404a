package tpmtoken_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Diagnostics.PQCKeyTypes (what `tpm11 keys` offers) names only what the
// TPM makes: nothing on swtpm; on the PQC test TPM every ML-DSA and ML-KEM
// set, and each one named makes a key pair in the TPM.
func TestPQCKeyTypesNameWhatTheTPMMakes(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	d, err := l.Diagnose()
	require.NoError(t, err)
	require.Empty(t, d.PQCKeyTypes())
	l.Close()

	f := swtpmtest.StartFwTPM(t)
	l = open(t, f.Spec, t.TempDir())
	defer l.Close()
	d, err = l.Diagnose()
	require.NoError(t, err)
	types := d.PQCKeyTypes()
	require.Equal(t, map[string]ck.ULong{
		"ml-dsa-44": ck.CKP_ML_DSA_44, "ml-dsa-65": ck.CKP_ML_DSA_65, "ml-dsa-87": ck.CKP_ML_DSA_87,
		"ml-kem-512": ck.CKP_ML_KEM_512, "ml-kem-768": ck.CKP_ML_KEM_768, "ml-kem-1024": ck.CKP_ML_KEM_1024,
	}, types)
	h := provision(t, l)
	for name, ps := range types {
		m := ck.CKM_ML_DSA_KEY_PAIR_GEN
		if strings.HasPrefix(name, "ml-kem") {
			m = ck.CKM_ML_KEM_KEY_PAIR_GEN
		}
		pubH, _, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: m},
			[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ps)}}, nil)
		require.NoError(t, err, name)
		got, err := l.GetAttributeValue(h, pubH, []ck.AttributeType{ck.CKA_PARAMETER_SET})
		require.NoError(t, err)
		require.Equal(t, ulong(ps), got[0].Value, name)
	}
}
