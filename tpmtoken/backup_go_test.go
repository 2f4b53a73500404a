package tpmtoken_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

// Backup and restore (backup.go) from Go: a token's backup restores it
// into an empty store on the same TPM, where its key still signs (Go's
// crypto verifies against the public key read before the backup); it
// restores nowhere else, never twice, and bad input gets CKR_ARGUMENTS_BAD.
func TestBackupRestoresOnlyOnItsTPM(t *testing.T) {
	spec := startSwtpm(t)
	l := open(t, spec, t.TempDir())
	defer l.Close()
	var empty bytes.Buffer
	require.Equal(t, ck.CKR_SLOT_ID_INVALID, rv(l.BackupToken(99, &empty)))
	require.Equal(t, ck.CKR_TOKEN_NOT_RECOGNIZED, rv(l.BackupToken(0, &empty)), "no token in the slot yet")
	require.Zero(t, empty.Len())
	h := provision(t, l)
	pubH, _ := ecTokenPair(t, l, h, 0x71)
	pub := spki(t, l, h, pubH).(*ecdsa.PublicKey)
	var backup bytes.Buffer
	require.NoError(t, l.BackupToken(0, &backup))
	require.NotZero(t, backup.Len())

	// Into an empty store on the same TPM.
	store2 := t.TempDir()
	l2 := open(t, spec, store2)
	serial, label, err := l2.RestoreToken(bytes.NewReader(backup.Bytes()))
	require.NoError(t, err)
	require.Equal(t, "test token", label)
	require.NotEmpty(t, serial)
	// Never twice: the token of that serial exists now.
	_, _, err = l2.RestoreToken(bytes.NewReader(backup.Bytes()))
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	// Not a backup, or a truncated one.
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a tar stream at all, just some bytes"),
		"truncated": backup.Bytes()[:backup.Len()/2],
	} {
		_, _, err = l2.RestoreToken(bytes.NewReader(bad))
		require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err), name)
	}
	l2.Close()

	// The library sees the restored token once reopened; its key signs.
	l3 := open(t, spec, store2)
	defer l3.Close()
	h3, err := l3.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l3.Login(h3, ck.CKU_USER, []byte("userpin")))
	keys := findID(t, l3, h3, []byte{0x71})
	require.Len(t, keys, 2)
	msg := []byte("signed after the restore")
	var signed bool
	for _, k := range keys {
		cls, err := l3.GetAttributeValue(h3, k, []ck.AttributeType{ck.CKA_CLASS})
		require.NoError(t, err)
		if !bytes.Equal(cls[0].Value, ulong(ck.CKO_PRIVATE_KEY)) {
			continue
		}
		sig := signWith(t, l3, h3, k, ck.CKM_ECDSA_SHA256, msg)
		d := sha256.Sum256(msg)
		require.True(t, ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))
		signed = true
	}
	require.True(t, signed)

	// Another TPM cannot use the backup's keys: nothing restored.
	otherSpec, store3 := startSwtpm(t), t.TempDir()
	other := open(t, otherSpec, store3)
	_, _, err = other.RestoreToken(bytes.NewReader(backup.Bytes()))
	require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err))
	require.Contains(t, err.Error(), "another TPM")
	other.Close()
	other = open(t, otherSpec, store3)
	defer other.Close()
	require.Equal(t, ck.CKR_TOKEN_NOT_RECOGNIZED, rv(other.BackupToken(0, &empty)), "a token appeared on another TPM")
}
