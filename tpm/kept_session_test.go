package tpm_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// The session kept across commands (kept_session.go), on fwtpm_server.

// wire records every command and response that crosses the transport.
type wire struct {
	t    transport.TPM
	cmds [][]byte
	rsps [][]byte
}

func (w *wire) Send(c []byte) ([]byte, error) {
	r, err := w.t.Send(c)
	w.cmds, w.rsps = append(w.cmds, bytes.Clone(c)), append(w.rsps, bytes.Clone(r))
	return r, err
}

func (w *wire) saw(v []byte) bool {
	for _, b := range append(append([][]byte{}, w.cmds...), w.rsps...) {
		if bytes.Contains(b, v) {
			return true
		}
	}
	return false
}

// sessions lists the TPM's loaded HMAC sessions.
func sessions(t *testing.T, tr transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTHMACSession) << 24, PropertyCount: 16}.Execute(tr)
	require.NoError(t, err)
	hs, err := rsp.CapabilityData.Data.Handles()
	require.NoError(t, err)
	return hs.Handle
}

// Many decapsulations, one session: each is one TPM command after the
// first, Go's secret comes out, and never crosses the bus in the clear;
// a key made by CreateKept under a parent with an authValue holds the
// value it was given (the TPM's HMAC with it is Go's), which crossed the
// bus encrypted. SaveAll leaves no session in the TPM; a session flushed
// behind the Engine's back costs one failed call, then a new one starts.
func TestKeptSession(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	raw := f.Transport(t)
	w := &wire{t: raw}
	e := tpm.NewEngine(w, 8)
	t.Cleanup(e.FlushAll)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	e.Salt = srk
	storageAuth := []byte("0123456789abcdef0123456789abcdef")
	sp, sk, err := e.Create(srk, tpm.StorageTemplate(), storageAuth, nil)
	require.NoError(t, err)
	storage := &tpm.Loadable{ID: "storage", Parent: srk, Public: sp, Private: sk, Auth: storageAuth}
	pub, priv, err := e.CreatePQC(storage, tpm.MLKEMKeyTemplate(tpm.MLKEM_768), nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "kem", Parent: storage, Public: pub, Private: priv}
	p, err := tpm.PublicOf(pub)
	require.NoError(t, err)
	_, err = e.Handle(key)
	require.NoError(t, err)

	secret, ct := encapsulate(t, tpm.MLKEM_768, p.Unique)
	got, err := e.Decapsulate(key, ct)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	const n = 10
	before := e.Commands
	for i := range n {
		secret, ct := encapsulate(t, tpm.MLKEM_768, p.Unique)
		got, err := e.Decapsulate(key, ct)
		require.NoError(t, err)
		require.Equal(t, secret, got, "round %d", i)
		require.False(t, w.saw(secret), "round %d: the shared secret crossed the bus in the clear", i)
	}
	require.Equal(t, uint64(n), e.Commands-before, "one TPM command per decapsulation with the session kept")
	require.Len(t, sessions(t, raw), 1)

	// CreateKept: the value goes in encrypted, and is the key's.
	value := bytes.Repeat([]byte("k3pt"), 8)
	before = e.Commands
	hp, hk, err := e.CreateKept(storage, ptr(tpm2.New2B(tpm.Supplied(tpm.HMACKeyTemplate()))), value)
	require.NoError(t, err)
	require.Equal(t, uint64(1), e.Commands-before, "TPM2_Create alone, over the kept session")
	require.False(t, w.saw(value), "the key's value crossed the bus in the clear")
	hkey := &tpm.Loadable{ID: "hmac", Parent: storage, Public: hp, Private: hk}
	mac, err := e.HMAC(hkey, tpm2.TPMAlgSHA256, []byte("data"))
	require.NoError(t, err)
	m := hmac.New(sha256.New, value)
	m.Write([]byte("data"))
	require.Equal(t, m.Sum(nil), mac, "the TPM's key is not the value given")

	// Handed back: no session left in the TPM.
	e.SaveAll()
	require.Empty(t, sessions(t, raw))
	secret, ct = encapsulate(t, tpm.MLKEM_768, p.Unique)
	got, err = e.Decapsulate(key, ct)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Flushed behind the Engine's back: the call fails, the next starts
	// a new session.
	hs := sessions(t, raw)
	require.Len(t, hs, 1)
	_, err = tpm2.FlushContext{FlushHandle: hs[0]}.Execute(raw)
	require.NoError(t, err)
	_, err = e.Decapsulate(key, ct)
	t.Logf("with the session gone: %v", err)
	got, err = e.Decapsulate(key, ct)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	require.Len(t, sessions(t, raw), 1)
}

func ptr[T any](v T) *T { return &v }
