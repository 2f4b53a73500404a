package tpmtoken_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

// From start to a logged-in session: TPM2_CreatePrimary (the SRK, at
// C_Initialize: it says the TPM answers and which TPM it is), then
// TPM2_Load (the user's PIN seal), TPM2_StartAuthSession (salted, for the
// Unseal's encrypted response) and TPM2_Unseal. The TPM's identity comes
// from what the last process kept for this TPM; the lockout state is read
// when first needed; the seal is flushed when its room is needed.
func TestStartToLoggedInTakesFourTPMCommands(t *testing.T) {
	// What is counted is the commands, not what a loaded machine's pauses
	// add: an idle process hands swtpm back after ReleaseAfter and loads
	// its SRK again after.
	patient(t)
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	provision(t, l)
	first, err := l.SlotInfo(0)
	require.NoError(t, err)
	l.Close()

	l = open(t, spec, dir)
	defer l.Close()
	si, err := l.SlotInfo(0) // answered from what was kept: no command
	require.NoError(t, err)
	require.Equal(t, first.Manufacturer, si.Manufacturer, "the TPM's identity in CK_SLOT_INFO")
	require.NotEmpty(t, si.Manufacturer)
	require.Equal(t, first.FW, si.FW)
	l.Close()

	l = open(t, spec, dir)
	s, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(s, ck.CKU_USER, []byte("userpin")))
	require.LessOrEqual(t, l.TPMCommands(), uint64(4))
	ti, err := l.TokenInfo(0)
	require.NoError(t, err)
	require.NotEmpty(t, ti.Manufacturer, "the TPM's identity in CK_TOKEN_INFO")
	require.Contains(t, ti.Model, "TPM 2.0")
	l.Close()
}

// The lockout state is not read at C_Initialize, yet a new process's first
// C_GetTokenInfo on a TPM in lockout says locked.
func TestNewLibraryOnALockedTPMSaysLocked(t *testing.T) {
	// The first query waits at most DAWait for the lockout state: on a
	// loaded machine a bound that only catches a hang.
	patient(t)
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l) // one failure of 3
	require.NoError(t, l.Logout(h))
	for range 2 {
		require.Equal(t, ck.CKR_PIN_INCORRECT, rv(l.Login(h, ck.CKU_USER, []byte("wrong-pin"))))
	}
	require.NotZero(t, tokenFlags(t, l)&ck.CKF_USER_PIN_LOCKED)
	l.Close()

	l = open(t, spec, dir)
	defer l.Close()
	require.NotZero(t, tokenFlags(t, l)&ck.CKF_USER_PIN_LOCKED, "the first token query of a process")
	s, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.Equal(t, ck.CKR_PIN_LOCKED, rv(l.Login(s, ck.CKU_USER, []byte("userpin"))))
}

// A TPM cleared (or another one) has another SRK: what was kept of the
// old one is not shown for it.
func TestKeptTPMIdentityIsPerTPM(t *testing.T) {
	dir := t.TempDir()
	l := open(t, startSwtpm(t), dir)
	provision(t, l)
	l.Close()
	l = open(t, swtpmtest.Socket(t), dir) // another swtpm: another seed
	defer l.Close()
	si, err := l.SlotInfo(1)
	require.NoError(t, err)
	require.NotEmpty(t, si.Manufacturer, "read afresh at start when nothing was kept for this TPM")
}

// patient makes the library's short waits (the idle hand-back of swtpm,
// the first lockout read) bounds that only catch a hang, for one test.
func patient(t *testing.T) {
	release, da := tpmtoken.ReleaseAfter, tpmtoken.DAWait
	tpmtoken.ReleaseAfter, tpmtoken.DAWait = time.Hour, 10*time.Minute
	t.Cleanup(func() { tpmtoken.ReleaseAfter, tpmtoken.DAWait = release, da })
}
