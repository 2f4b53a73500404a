package tpm_test

import (
	"bytes"
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

// With a salt key, authValues, sealed data and new auths never appear on
// the bus: sealing, unsealing, changing auth and loading under a parent
// with a secret auth all go through salted, encrypted HMAC sessions.
func TestSecretsNeverCrossTheBus(t *testing.T) {
	p := &tap{t: swtpmtest.Start(t)}
	e := tpm.NewEngine(p, 3)
	srk := &tpm.Object{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	pinAuth := []byte("0123456789abcdef0123456789abcdef")
	newAuth := []byte("fedcba9876543210fedcba9876543210")
	sealed := []byte("storage-auth-value-never-on-bus!")
	pub, priv, err := e.Create(srk, tpm.SealTemplate(), pinAuth, sealed)
	require.NoError(t, err)
	seal := &tpm.Object{ID: "seal", Parent: srk, Public: pub, Private: priv, Auth: pinAuth}
	got, err := e.Unseal(seal)
	require.NoError(t, err)
	require.Equal(t, sealed, got)
	newPriv, err := e.ChangeAuth(seal, newAuth)
	require.NoError(t, err)
	sp, sk, err := e.Create(srk, tpm.StorageTemplate(), sealed, nil)
	require.NoError(t, err)
	storage := &tpm.Object{ID: "storage", Parent: srk, Public: sp, Private: sk, Auth: sealed}
	kp, kk, err := e.Create(storage, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	e.FlushAll()
	_, err = e.Handle(&tpm.Object{ID: "key", Parent: storage, Public: kp, Private: kk})
	require.NoError(t, err)
	for _, secret := range [][]byte{pinAuth, newAuth, sealed} {
		require.False(t, bytes.Contains(p.seen.Bytes(), secret), "%q seen on the bus", secret)
	}
	// Without a salt key, the same exchange shows the PIN-derived value.
	e.FlushAll()
	e.Salt = nil
	got, err = e.Unseal(&tpm.Object{ID: "seal2", Parent: srk, Public: pub, Private: newPriv, Auth: newAuth})
	require.NoError(t, err)
	require.Equal(t, sealed, got)
	require.True(t, bytes.Contains(p.seen.Bytes(), newAuth), "the tap sees nothing: the test cannot tell")
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, p, 0)
}
