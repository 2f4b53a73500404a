package tpm_test

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// RSADecryptSecret on swtpm: the block Go encrypted comes back, and never
// crosses the bus in the clear (RSARaw's does: the check can fail). With
// the TPM's three object slots full (salt key, storage key, RSA key) and
// TPM2_Create of the result needing one more, the salt key is the one that
// makes room after the session starts: from the second call after a
// hand-over (SaveAll), a decryption and a CreateKept are two TPM commands.
func TestRSADecryptSecret(t *testing.T) {
	w := &wire{t: swtpmtest.Start(t)}
	e := tpm.NewEngine(w, 3)
	t.Cleanup(e.FlushAll)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	sp, sk, err := e.Create(srk, tpm.StorageTemplate(), nil, nil)
	require.NoError(t, err)
	storage := &tpm.Loadable{ID: "storage", Parent: srk, Public: sp, Private: sk}
	pub, priv, err := e.Create(storage, tpm.RSAKeyTemplate(2048), nil, nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "rsa", Parent: storage, Public: pub, Private: priv}
	pa, err := pub.Contents()
	require.NoError(t, err)
	pk, err := tpm.PublicKey(pa)
	require.NoError(t, err)
	rk := pk.(*rsa.PublicKey)
	// A block below the modulus, its ciphertext by Go's big integers.
	block := func() ([]byte, []byte) {
		m := make([]byte, rk.Size())
		_, _ = rand.Read(m[1:])
		c := new(big.Int).Exp(new(big.Int).SetBytes(m), big.NewInt(int64(rk.E)), rk.N)
		return m, c.FillBytes(make([]byte, rk.Size()))
	}
	template := ptr(tpm2.New2B(tpm.Supplied(tpm.HMACKeyTemplate())))

	m, c := block()
	got, err := e.RSARaw(key, c)
	require.NoError(t, err)
	require.Equal(t, m[1:], got[len(got)-len(m)+1:])
	require.True(t, w.saw(m[len(m)-32:]), "RSARaw's result is in the clear: the check below would see it")

	for hand := range 2 {
		e.SaveAll()
		for i := range 3 {
			m, c := block()
			before := e.Commands
			got, err := e.RSADecryptSecret(key, c)
			require.NoError(t, err)
			require.Equal(t, m[1:], got[len(got)-len(m)+1:], "hand-over %d call %d", hand, i)
			require.False(t, w.saw(m[len(m)-32:]), "hand-over %d call %d: the block crossed the bus in the clear", hand, i)
			_, _, err = e.CreateKept(storage, template, m[len(m)-32:])
			require.NoError(t, err)
			if i > 0 {
				require.Equal(t, uint64(2), e.Commands-before, "hand-over %d call %d: TPM2_RSA_Decrypt and TPM2_Create only", hand, i)
			}
		}
	}
}
