package tpmtoken

import (
	"encoding/json"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// C_GetOperationState / C_SetOperationState. What runs in software can be
// saved: a digest, and a verification with a public key (its running hash
// and mechanism; the key is given again to C_SetOperationState). What lives
// in the TPM cannot (a signature, a decryption, AES chaining, an HMAC):
// CKR_STATE_UNSAVEABLE, the spec's code for it. The state is this
// module's own versioned JSON; the spec leaves its format to the token.

type savedOp struct {
	Version int             `json:"v"`
	Kind    OpKind          `json:"kind"`
	Mech    ck.MechType     `json:"mech"`
	PSS     *mech.PSSParams `json:"pss,omitempty"`
	Input   []byte          `json:"input"`
	Multi   bool            `json:"multi,omitempty"`
}

const savedOpVersion = 1

// OperationState saves session h's active operations (digest and
// software verification only).
func (l *Library) OperationState(h uint64) ([]byte, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var saved []savedOp
	for _, kind := range []OpKind{OpDigest, OpSign, OpVerify, OpEncrypt, OpDecrypt, OpSignRecover, OpVerifyRecover, OpVerifySignature} {
		o := s.op(kind)
		if o == nil {
			continue
		}
		if o.state().busy {
			return nil, ck.Errorf(ck.CKR_OPERATION_ACTIVE, "a concurrent call is running the operation")
		}
		var sv savedOp
		switch op := o.(type) {
		case *digestOp:
			m, ok := op.h.(interface{ MarshalBinary() ([]byte, error) })
			if !ok {
				return nil, ck.E(ck.CKR_STATE_UNSAVEABLE)
			}
			b, err := m.MarshalBinary()
			if err != nil {
				return nil, ck.Wrap(ck.CKR_STATE_UNSAVEABLE, err)
			}
			sv = savedOp{Mech: op.mech, Input: b}
		case *verifyOp:
			if kind != OpVerify || op.mac != nil {
				return nil, ck.E(ck.CKR_STATE_UNSAVEABLE) // an HMAC needs the TPM
			}
			b, err := op.in.State()
			if err != nil {
				return nil, err
			}
			sv = savedOp{Mech: op.sig.Type, PSS: op.pss, Input: b}
		default:
			return nil, ck.E(ck.CKR_STATE_UNSAVEABLE)
		}
		sv.Version, sv.Kind, sv.Multi = savedOpVersion, kind, o.state().multi
		saved = append(saved, sv)
	}
	if len(saved) == 0 {
		return nil, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	return b, nil
}

// SetOperationState restores a state from OperationState on session h;
// authKey is the verification key of a saved verification.
func (l *Library) SetOperationState(h uint64, state []byte, encKey, authKey uint64) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	var saved []savedOp
	if err := json.Unmarshal(state, &saved); err != nil || len(saved) == 0 {
		return ck.E(ck.CKR_SAVED_STATE_INVALID)
	}
	for _, sv := range saved {
		if sv.Version != savedOpVersion {
			return ck.E(ck.CKR_SAVED_STATE_INVALID)
		}
		switch sv.Kind {
		case OpDigest:
			hf := mech.HashOf(sv.Mech)
			if hf == nil {
				return ck.E(ck.CKR_SAVED_STATE_INVALID)
			}
			hh := hf.New()
			u, ok := hh.(interface{ UnmarshalBinary([]byte) error })
			if !ok || u.UnmarshalBinary(sv.Input) != nil {
				return ck.E(ck.CKR_SAVED_STATE_INVALID)
			}
			op := &digestOp{h: hh, mech: sv.Mech}
			op.multi = sv.Multi
			s.mu.Lock()
			if s.ops == nil {
				s.ops = map[OpKind]operation{}
			}
			s.ops[OpDigest] = op
			s.mu.Unlock()
		case OpVerify:
			if authKey == 0 {
				return ck.E(ck.CKR_KEY_NEEDED)
			}
			s.end(OpVerify)
			m := Mechanism{Type: sv.Mech}
			if sv.PSS != nil {
				m.Param = *sv.PSS
			}
			if err := l.VerifyInit(h, m, authKey); err != nil {
				if ck.ToRV(err) == ck.CKR_KEY_HANDLE_INVALID || ck.ToRV(err) == ck.CKR_KEY_TYPE_INCONSISTENT {
					return ck.Wrap(ck.CKR_KEY_CHANGED, err)
				}
				return err
			}
			s.mu.Lock()
			op, _ := s.ops[OpVerify].(*verifyOp)
			s.mu.Unlock()
			if op == nil {
				return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
			}
			if err := op.in.SetState(sv.Input); err != nil {
				s.end(OpVerify)
				return err
			}
			op.multi = sv.Multi
		default:
			return ck.E(ck.CKR_SAVED_STATE_INVALID)
		}
	}
	_ = encKey // no saveable operation needs an encryption key
	return nil
}
