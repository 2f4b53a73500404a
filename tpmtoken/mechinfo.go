package tpmtoken

import (
	"slices"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// MechInfo is CK_MECHANISM_INFO.
type MechInfo = mech.Info

// sizes is the key-size range of kind on this TPM, as CK_MECHANISM_INFO
// reports it (max 0: the TPM offers no key of the kind).
func (c caps) sizes(kind mech.KeyKind) (uint64, uint64) {
	span := func(v []int) (uint64, uint64) {
		if len(v) == 0 {
			return 0, 0
		}
		return uint64(slices.Min(v)), uint64(slices.Max(v))
	}
	switch kind {
	case mech.KindRSA:
		return span(c.RSABits)
	case mech.KindEC:
		var bits []int
		for _, id := range c.Curves {
			if cv := mech.CurveOfTPM(id); cv != nil {
				bits = append(bits, cv.Bits)
			}
		}
		return span(bits)
	case mech.KindAES:
		lo, hi := span(c.AESBits)
		return lo / 8, hi / 8
	case mech.KindSecret:
		return 1, mech.MaxSecretBytes
	case mech.KindMLDSA, mech.KindMLKEM, mech.KindHashMLDSA, mech.KindHashMLDSASHA256, mech.KindHashMLDSASHA384:
		return c.pqcSizes(kind) // pqc_keys.go
	}
	return 0, 0
}

// MechanismList lists the mechanisms of slot id, sorted.
func (l *Library) MechanismList(id uint64) ([]ck.MechType, error) {
	if _, err := l.slot(id); err != nil {
		return nil, err
	}
	return mech.List(l.caps().sizes), nil
}

// MechanismInfo describes one mechanism.
func (l *Library) MechanismInfo(id uint64, m ck.MechType) (MechInfo, error) {
	if _, err := l.slot(id); err != nil {
		return MechInfo{}, err
	}
	info, err := mech.InfoOf(m, l.caps().sizes)
	if l.Simulated() {
		info.Flags &^= ck.CKF_HW // a simulator is not hardware: say so
	}
	return info, err
}

// candidates is every key size and curve the token knows, for the TPM to
// be asked about.
func candidates() tpm.Caps {
	c := tpm.Caps{RSABits: mech.RSABits, AESBits: mech.AESBits}
	for _, cv := range mech.Curves {
		c.Curves = append(c.Curves, cv.TPM)
	}
	return c
}
