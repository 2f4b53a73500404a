package tpm

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
)

// The hand-marshalled TPM2_ContextLoad and TPM2_FlushContext are byte for
// byte what go-tpm sends, and their responses read as go-tpm reads them.
func TestContextCommandsMatchGoTPM(t *testing.T) {
	ctx := tpm2.TPMSContext{Sequence: 0x1122334455667788, SavedHandle: 0x80000002, Hierarchy: tpm2.TPMRHOwner,
		ContextBlob: tpm2.TPM2BContextData{Buffer: []byte("encrypted and integrity-protected by the TPM")}}
	loaded := []byte{0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0, 0x80, 0, 0, 1}
	saved := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
	saved = finish(append(saved, tpm2.Marshal(ctx)...))

	want := &recorder{rsp: loaded}
	ref, err := tpm2.ContextLoad{Context: ctx}.Execute(want)
	require.NoError(t, err)
	got := &recorder{rsp: saved}
	e := NewEngine(got, 3)
	c, err := e.contextSave(0x80000002)
	require.NoError(t, err)
	require.Equal(t, []byte{0x80, 0, 0, 2}, got.cmd[HeaderSize:])
	got.rsp = loaded
	h, err := e.contextLoad(c)
	require.NoError(t, err)
	require.Equal(t, want.cmd, got.cmd)
	require.Equal(t, ref.LoadedHandle, h)

	want = &recorder{rsp: []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}}
	_, err = tpm2.FlushContext{FlushHandle: tpm2.TPMHandle(0x80000001)}.Execute(want)
	require.NoError(t, err)
	got = &recorder{rsp: want.rsp}
	require.NoError(t, NewEngine(got, 3).flush(0x80000001))
	require.Equal(t, want.cmd, got.cmd)

	// A response of another shape is the TPM's fault, not a handle.
	for _, rsp := range [][]byte{loaded[:12], append(append([]byte(nil), loaded...), 0), {0x80, 0x02, 0, 0, 0, 14, 0, 0, 0, 0, 0x80, 0, 0, 1}} {
		binary.BigEndian.PutUint32(rsp[2:6], uint32(len(rsp)))
		got.rsp = rsp
		_, err := NewEngine(got, 3).contextLoad(c)
		require.ErrorIs(t, err, errMalformed)
	}
}
