package sim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/internal/atomicfile"
	"github.com/tpm11/tpm11/tpm"
)

// The simulator's dictionary-attack state outlives the process.
//
// Every open of the simulator starts from empty NV: its lockout counter
// would be zero in each new process, and anyone could try three PINs per
// process for ever. So the counter and the DA parameters are kept in the
// store next to the seed (simulator-da), written whenever a command may
// have changed them (a refused authorization, a lockout reset, new
// parameters), and put back at open: the parameters are set again and the
// failures replayed against a throwaway key, less those the recovery time
// has forgiven since (the simulator's own clock starts at zero each time).
// A process that is killed loses at most what it had not yet written: the
// write follows the failure before the failing command returns.

type simDA struct {
	Counter         uint32 `json:"counter"`
	MaxTries        uint32 `json:"max_tries"`
	Recovery        uint32 `json:"recovery_s"`
	LockoutRecovery uint32 `json:"lockout_recovery_s"`
	Saved           int64  `json:"saved_unix"`
}

// daKeeper wraps the simulator's transport and records its DA state.
type daKeeper struct {
	t    transport.TPM
	path string
	last simDA
}

func (k *daKeeper) Send(cmd []byte) ([]byte, error) {
	rsp, err := k.t.Send(cmd)
	h, ok := tpm.ResponseHeader(rsp)
	if err != nil || !ok {
		return rsp, err
	}
	c, _ := tpm.CommandHeader(cmd)
	rc, cc := h.ResponseCode, c.CommandCode
	// TPM_RC_AUTH_FAIL on any handle or session: TPMRC.Is compares a
	// format-1 code without its handle, session or parameter number.
	if errors.Is(rc, tpm2.TPMRCAuthFail) || rc == tpm2.TPMRCLockout ||
		(rc == tpm2.TPMRCSuccess && (cc == tpm2.TPMCCDictionaryAttackLockReset || cc == tpm2.TPMCCDictionaryAttackParameters)) {
		k.save()
	}
	return rsp, nil
}

// save reads the DA state from the simulator and writes it if it changed.
func (k *daKeeper) save() {
	st, err := readSimDA(k.t)
	if err != nil {
		return
	}
	cmp := st
	cmp.Saved = k.last.Saved
	if cmp == k.last {
		return
	}
	st.Saved = time.Now().Unix()
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	if atomicfile.Write(k.path, b) == nil {
		k.last = st
	}
}

func readSimDA(t transport.TPM) (simDA, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 4,
	}.Execute(t)
	if err != nil {
		return simDA{}, err
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return simDA{}, err
	}
	var st simDA
	for _, p := range props.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTLockoutCounter:
			st.Counter = p.Value
		case tpm2.TPMPTMaxAuthFail:
			st.MaxTries = p.Value
		case tpm2.TPMPTLockoutInterval:
			st.Recovery = p.Value
		case tpm2.TPMPTLockoutRecovery:
			st.LockoutRecovery = p.Value
		}
	}
	return st, nil
}

// keepDA restores the DA state saved in stateDir into a freshly opened
// simulator and returns the transport that keeps it saved.
func keepDA(t transport.TPM, stateDir string) (transport.TPM, error) {
	k := &daKeeper{t: t, path: filepath.Join(stateDir, "simulator-da")}
	cur, err := readSimDA(t)
	if err != nil {
		return nil, err
	}
	k.last = cur
	b, err := atomicfile.Read(k.path, 64<<10)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	var saved simDA
	if err := json.Unmarshal(b, &saved); err != nil {
		// A damaged record must not reset the counter: count the worst.
		saved = cur
		saved.Counter = cur.MaxTries
		saved.Saved = time.Now().Unix()
	}
	if saved.MaxTries != cur.MaxTries || saved.Recovery != cur.Recovery || saved.LockoutRecovery != cur.LockoutRecovery {
		if err := tpm.SetDAParameters(t, saved.MaxTries, saved.Recovery, saved.LockoutRecovery); err != nil {
			return nil, err
		}
	}
	n := saved.Counter
	if saved.Recovery > 0 {
		elapsed := time.Now().Unix() - saved.Saved
		if forgiven := elapsed / int64(saved.Recovery); elapsed > 0 && forgiven > 0 {
			n -= uint32(min(forgiven, int64(n)))
		}
	}
	if err := failAuth(t, min(n, saved.MaxTries)); err != nil {
		return nil, err
	}
	k.last, _ = readSimDA(t)
	k.last.Saved = saved.Saved
	return k, nil
}

// failAuth makes n authorizations fail against a DA-protected key, so
// the simulator's lockout counter counts them.
func failAuth(t transport.TPM, n uint32) error {
	if n == 0 {
		return nil
	}
	tmpl := tpm.ECCKeyTemplate(tpm2.TPMECCNistP256)
	tmpl.ObjectAttributes.NoDA = false
	key, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: []byte("tpm11 lockout replay")},
		}},
		InPublic: tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return err
	}
	defer tpm2.FlushContext{FlushHandle: key.ObjectHandle}.Execute(t)
	for i := uint32(0); i < n; i++ {
		_, err := tpm2.Sign{
			KeyHandle: tpm2.AuthHandle{Handle: key.ObjectHandle, Name: key.Name, Auth: tpm2.PasswordAuth([]byte("wrong"))},
			Digest:    tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
			InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
		}.Execute(t)
		if err == nil {
			return errors.New("replaying lockout failures: a wrong authValue was accepted")
		}
		if errors.Is(err, tpm2.TPMRCLockout) {
			return nil
		}
	}
	return nil
}
