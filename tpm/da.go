package tpm

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
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
		cmd := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0x01, 0x46} // TPM_ST_NO_SESSIONS, size, TPM_CC_StirRandom
		cmd = binary.BigEndian.AppendUint16(cmd, uint16(n))
		cmd = append(cmd, data[:n]...)
		binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
		if err := checkRC(e.tr().Send(cmd)); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func checkRC(rsp []byte, err error) error {
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return fmt.Errorf("short TPM response")
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return rc
	}
	return nil
}
