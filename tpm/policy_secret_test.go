package tpm_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Keys bound to PCR 16 (a policy session authorizes them) decrypt a
// secret and compute ECDH Z with the result encrypted on the bus: the
// salted session the Engine keeps rides along as a second, encrypt-only
// session. Go made the OAEP ciphertext and the peer's ECDH key; the TPM's
// answers are Go's secret and Go's Z, and neither crossed the bus in the
// clear (RSARaw's policy path shows the tap would see it). A PCR moved
// refuses with ErrPolicy; after a reset both work again over the same
// kept session, and nothing is left in the TPM.
func TestPolicyKeySecretsEncrypted(t *testing.T) {
	tr := swtpmtest.Start(t)
	w := &wire{t: tr}
	e := tpm.NewEngine(w, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	_, digest, err := e.ReadPCRs([]int{16})
	require.NoError(t, err)
	p := &tpm.Policy{PCRs: []int{16}, Digest: digest}
	bound := func(id string, tmpl tpm2.TPMTPublic) (*tpm.Loadable, any) {
		b, err := tpm.Bind(tmpl, p)
		require.NoError(t, err)
		pub, priv, err := e.Create(srk, b, nil, nil)
		require.NoError(t, err)
		pa, err := pub.Contents()
		require.NoError(t, err)
		pk, err := tpm.PublicKey(pa)
		require.NoError(t, err)
		return &tpm.Loadable{ID: id, Parent: srk, Public: pub, Private: priv, Policy: p}, pk
	}
	rk, rpk := bound("rsa", tpm.RSAKeyTemplate(2048))
	ek, epk := bound("ec", tpm.ECCKeyTemplate(tpm2.TPMECCNistP256))
	oaep := mech.OAEP{Hash: mech.HashOf(ck.CKM_SHA256)}

	// rsaSecret: Go's secret, OAEP-encrypted by Go, decrypted in the TPM.
	rsaSecret := func(viaRaw bool) ([]byte, []byte, error) {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		c, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, rpk.(*rsa.PublicKey), secret, nil)
		require.NoError(t, err)
		var em []byte
		if viaRaw {
			em, err = e.RSARaw(rk, c)
		} else {
			em, err = e.RSADecryptSecret(rk, c)
		}
		if err != nil {
			return secret, nil, err
		}
		em = append(make([]byte, 256-len(em)), em...)
		got, ok := oaep.Decode(em)
		require.True(t, ok, "the block is not Go's OAEP encoding")
		require.Equal(t, secret, got)
		return secret, em, nil
	}
	// ecdhZ: Z of the TPM key and a Go key, by the TPM and by Go.
	tpmPub, err := epk.(*ecdsa.PublicKey).ECDH()
	require.NoError(t, err)
	ecdhZ := func() ([]byte, []byte, error) {
		peer, err := ecdh.P256().GenerateKey(rand.Reader)
		require.NoError(t, err)
		pt := peer.PublicKey().Bytes() // 04 || X || Y
		want, err := peer.ECDH(tpmPub)
		require.NoError(t, err)
		z, err := e.ECDH(ek, pt[1:33], pt[33:])
		return want, z, err
	}

	// The tap sees a policy key's block when it travels in the clear.
	_, em, err := rsaSecret(true)
	require.NoError(t, err)
	require.True(t, w.saw(em[len(em)-32:]), "RSARaw's block is in the clear: the checks below would see it")

	check := func(round string) {
		for i := range 3 {
			_, em, err := rsaSecret(false)
			require.NoError(t, err, "%s %d", round, i)
			require.False(t, w.saw(em[len(em)-32:]), "%s %d: the padded secret crossed the bus in the clear", round, i)
			want, z, err := ecdhZ()
			require.NoError(t, err, "%s %d", round, i)
			require.Equal(t, want, z, "%s %d: Z is not Go's", round, i)
			require.False(t, w.saw(z), "%s %d: Z crossed the bus in the clear", round, i)
		}
	}
	check("first")
	e.SaveAll()
	check("after a hand-over")

	require.NoError(t, e.ExtendPCR(16, []byte("new kernel")))
	_, _, err = rsaSecret(false)
	require.ErrorIs(t, err, tpm.ErrPolicy)
	_, _, err = ecdhZ()
	require.ErrorIs(t, err, tpm.ErrPolicy)
	resetPCR16(t, tr)
	check("after a reset")

	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// The operations that authorize by authValue alone refuse a key with a
// policy with ErrPolicyUnsupported, before any TPM command (the key here
// could not even be loaded).
func TestPolicyKeyRefused(t *testing.T) {
	w := &wire{t: swtpmtest.Start(t)}
	e := tpm.NewEngine(w, 3)
	key := &tpm.Loadable{ID: "bound", Policy: &tpm.Policy{PCRs: []int{16}, Digest: make([]byte, 32)}}
	refused := map[string]error{}
	_, refused["Decapsulate"] = e.Decapsulate(key, make([]byte, 768))
	_, refused["SignDigest"] = e.SignDigest(key, nil, make([]byte, 64))
	_, refused["SignSequenceStart"] = e.SignSequenceStart(key, nil)
	_, refused["SignMessage"] = e.SignMessage(key, nil, []byte("m"))
	_, refused["SignSequenceComplete"] = e.SignSequenceComplete(&tpm.SignSeq{Handle: 0x80000001, Key: key}, nil)
	_, _, refused["EncryptDecrypt"] = e.EncryptDecrypt(key, true, tpm2.TPMAlgCFB, make([]byte, 16), make([]byte, 16))
	_, refused["CBCMAC"] = e.CBCMAC(key, make([]byte, 16))
	_, refused["HMAC"] = e.HMAC(key, tpm2.TPMAlgSHA256, []byte("m"))
	for op, err := range refused {
		require.ErrorIs(t, err, tpm.ErrPolicyUnsupported, op)
	}
	require.Empty(t, w.cmds, "a refused operation sent a TPM command")
}

// A key under an authorized policy (TPM2_PolicyAuthorize: an external
// authority key loaded while the policy session is satisfied) computes
// Go's ECDH Z over the encrypt-only kept session too, under the approved
// PCR values only.
func TestAuthorizedPolicyKeyECDH(t *testing.T) {
	tr := swtpmtest.Start(t)
	w := &wire{t: tr}
	e := tpm.NewEngine(w, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	_, key := authorizedECCKey(t, e, srk)
	pa, err := key.Public.Contents()
	require.NoError(t, err)
	pk, err := tpm.PublicKey(pa)
	require.NoError(t, err)
	tpmPub, err := pk.(*ecdsa.PublicKey).ECDH()
	require.NoError(t, err)
	ecdhZ := func() ([]byte, []byte, error) {
		peer, err := ecdh.P256().GenerateKey(rand.Reader)
		require.NoError(t, err)
		pt := peer.PublicKey().Bytes()
		want, err := peer.ECDH(tpmPub)
		require.NoError(t, err)
		z, err := e.ECDH(key, pt[1:33], pt[33:])
		return want, z, err
	}
	for i := range 2 {
		want, z, err := ecdhZ()
		require.NoError(t, err, "%d", i)
		require.Equal(t, want, z, "%d: Z is not Go's", i)
		require.False(t, w.saw(z), "%d: Z crossed the bus in the clear", i)
	}
	require.NoError(t, e.ExtendPCR(16, []byte("update")))
	_, _, err = ecdhZ()
	require.ErrorIs(t, err, tpm.ErrPolicy)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}
