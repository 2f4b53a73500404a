package tpm

import (
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DAState is the TPM's dictionary-attack state. It is TPM-wide: every
// DA-protected authorization shares one counter.
type DAState struct {
	Counter, MaxTries uint32
	InLockout         bool
}

// DAState reads the lockout counter, the allowed failures and whether the
// TPM is in lockout (TPMA_PERMANENT.inLockout, bit 9).
func (e *Engine) DAState() (DAState, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTPermanent),
		PropertyCount: uint32(tpm2.TPMPTMaxAuthFail-tpm2.TPMPTPermanent) + 1,
	}.Execute(e.tr())
	if err != nil {
		return DAState{}, err
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return DAState{}, err
	}
	var st DAState
	for _, p := range props.TPMProperty {
		st.set(p)
	}
	return st, nil
}

func (st *DAState) set(p tpm2.TPMSTaggedProperty) {
	switch p.Property {
	case tpm2.TPMPTPermanent:
		st.InLockout = p.Value&(1<<9) != 0
	case tpm2.TPMPTLockoutCounter:
		st.Counter = p.Value
	case tpm2.TPMPTMaxAuthFail:
		st.MaxTries = p.Value
	}
}

// StirRandom mixes data into the TPM's RNG state (TPM2_StirRandom, which
// go-tpm's tpm2 package lacks), at most 128 bytes per command.
func (e *Engine) StirRandom(data []byte) error {
	for len(data) > 0 {
		n := min(len(data), 128)
		cmd := newCommand(nil, tpm2.TPMSTNoSessions, tpm2.TPMCCStirRandom)
		cmd = appendTPM2B(cmd, data[:n])
		if err := checkRC(e.tr().Send(finish(cmd))); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// SetDAParameters runs TPM2_DictionaryAttackParameters with the lockout
// hierarchy's empty password (a fresh simulator's or swtpm's), which
// go-tpm's tpm2 package does not offer: the simulator puts back the
// parameters it kept (simda.go), tests set a known lockout policy. The
// token itself never changes them.
func SetDAParameters(t transport.TPM, maxTries, recovery, lockoutRecovery uint32) error {
	cmd := newCommand(nil, tpm2.TPMSTSessions, tpm2.TPMCCDictionaryAttackParameters)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHLockout))
	cmd = binary.BigEndian.AppendUint32(cmd, 9)                    // authorization area size
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRSPW)) // password session
	cmd = append(cmd, 0, 0, 0x01, 0, 0)                            // no nonce, continueSession, empty password
	for _, v := range []uint32{maxTries, recovery, lockoutRecovery} {
		cmd = binary.BigEndian.AppendUint32(cmd, v)
	}
	return checkRC(t.Send(finish(cmd)))
}
