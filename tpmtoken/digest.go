package tpmtoken

import (
	"hash"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Digests run in software: hashing public data gains nothing from the TPM
// and would serialize every caller behind it.
type digestOp struct {
	opState
	h    hash.Hash
	mech ck.MechType
}

func (op *digestOp) outLen(p Part, _ int) (int, bool, error) {
	if p == Update {
		return 0, true, nil
	}
	return op.h.Size(), true, nil
}

// DigestInit starts a digest. No login needed.
func (l *Library) DigestInit(h uint64, m Mechanism) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	hf := mech.HashOf(m.Type)
	if hf == nil {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if b, ok := m.Param.(mech.Bytes); m.Param != nil && (!ok || len(b) != 0) {
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.digest != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	s.digest = &digestOp{h: hf.New(), mech: m.Type}
	return nil
}

// Digest hashes data in one part.
func (l *Library) Digest(h uint64, data []byte) ([]byte, error) {
	s, op, err := activeOp[*digestOp](l, h, OpDigest, Single)
	if err != nil {
		return nil, err
	}
	s.end(OpDigest)
	op.h.Write(data)
	return op.h.Sum(nil), nil
}

// DigestUpdate feeds data.
func (l *Library) DigestUpdate(h uint64, data []byte) error {
	_, op, err := activeOp[*digestOp](l, h, OpDigest, Update)
	if err == nil {
		op.h.Write(data)
	}
	return err
}

// DigestFinal finishes a multi-part digest.
func (l *Library) DigestFinal(h uint64) ([]byte, error) {
	s, op, err := activeOp[*digestOp](l, h, OpDigest, Final)
	if err != nil {
		return nil, err
	}
	s.end(OpDigest)
	return op.h.Sum(nil), nil
}

// DigestKey feeds the value of secret key obj to session h's digest. Only
// a key whose value the token may reveal (a readable session key) can be
// digested; a key in the TPM is CKR_KEY_INDIGESTIBLE.
func (l *Library) DigestKey(h, obj uint64) error {
	s, op, err := activeOp[*digestOp](l, h, OpDigest, Update)
	if err != nil {
		return err
	}
	o, err := s.tok.object(obj)
	if err != nil {
		return s.settle(OpDigest, ck.E(ck.CKR_KEY_HANDLE_INVALID))
	}
	v, readable := o.Attrs[ck.CKA_VALUE]
	if o.class() != ck.CKO_SECRET_KEY || !readable {
		return s.settle(OpDigest, ck.E(ck.CKR_KEY_INDIGESTIBLE))
	}
	op.h.Write(v)
	return nil
}
