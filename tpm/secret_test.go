package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// tap records every byte to and from the TPM: what a bus sniffer sees.
type tap struct {
	t    transport.TPM
	seen bytes.Buffer
}

func (p *tap) Send(cmd []byte) ([]byte, error) {
	p.seen.Write(cmd)
	rsp, err := p.t.Send(cmd)
	p.seen.Write(rsp)
	return rsp, err
}

// With a salt key, authValues, sealed data, new auths and imported private
// keys never appear on the bus: sealing, unsealing, changing auth, loading
// under a parent with a secret auth and importing all go through salted,
// encrypted HMAC sessions (and, for the import, an inner wrapper).
func TestSecretsNeverCrossTheBus(t *testing.T) {
	p := &tap{t: swtpmtest.Start(t)}
	e := tpm.NewEngine(p, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	pinAuth := []byte("0123456789abcdef0123456789abcdef")
	newAuth := []byte("fedcba9876543210fedcba9876543210")
	sealed := []byte("storage-auth-value-never-on-bus!")
	pub, priv, err := e.Create(srk, tpm.SealTemplate(), pinAuth, sealed)
	require.NoError(t, err)
	seal := &tpm.Loadable{ID: "seal", Parent: srk, Public: pub, Private: priv, Auth: pinAuth}
	got, err := e.Unseal(seal)
	require.NoError(t, err)
	require.Equal(t, sealed, got)
	newPriv, err := e.ChangeAuth(seal, newAuth)
	require.NoError(t, err)
	sp, sk, err := e.Create(srk, tpm.StorageTemplate(), sealed, nil)
	require.NoError(t, err)
	storage := &tpm.Loadable{ID: "storage", Parent: srk, Public: sp, Private: sk, Auth: sealed}
	kp, kk, err := e.Create(storage, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	e.FlushAll()
	_, err = e.Handle(&tpm.Loadable{ID: "key", Parent: storage, Public: kp, Private: kk})
	require.NoError(t, err)

	// An imported private key travels inner-wrapped, its wrapping key encrypted.
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	d := ek.D.FillBytes(make([]byte, 32))
	pubArea := tpm.Importable(tpm.ECCKeyTemplate(tpm2.TPMECCNistP256))
	pubArea.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: ek.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: ek.Y.FillBytes(make([]byte, 32))},
	})
	ip, err := e.Import(storage, pubArea, tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		SeedValue:     tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: d}),
	})
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("imported"))
	sig, err := e.Sign(&tpm.Loadable{ID: "imported", Parent: storage, Public: tpm2.New2B(pubArea), Private: ip}, digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	require.NoError(t, err)
	es, err := sig.Signature.ECDSA()
	require.NoError(t, err)
	require.True(t, ecdsa.Verify(&ek.PublicKey, digest[:], new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)))

	for _, secret := range [][]byte{pinAuth, newAuth, sealed, d[:16], d[16:]} {
		require.False(t, bytes.Contains(p.seen.Bytes(), secret), "%q seen on the bus", secret)
	}
	// Without a salt key, the same exchange shows the PIN-derived value.
	e.FlushAll()
	e.Salt = nil
	got, err = e.Unseal(&tpm.Loadable{ID: "seal2", Parent: srk, Public: pub, Private: newPriv, Auth: newAuth})
	require.NoError(t, err)
	require.Equal(t, sealed, got)
	require.True(t, bytes.Contains(p.seen.Bytes(), newAuth), "the tap sees nothing: the test cannot tell")
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, p, 0)
}
