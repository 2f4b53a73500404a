package tpmtoken

import (
	"hash"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Digests run in software: hashing public data gains nothing from the TPM
// and would serialize every caller behind it.

const OpDigest OpKind = 0

func init() { defineKind(OpDigest, "digest", ck.CKF_DIGEST) }

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

func (op *digestOp) run(c *opCall) ([]byte, error) {
	op.h.Write(c.in)
	if c.part == Update {
		return nil, nil
	}
	return op.h.Sum(nil), nil
}

// DigestInit starts a digest. No login needed.
func (l *Library) DigestInit(h uint64, m Mechanism) error {
	return l.initOp(h, OpDigest, func(*Session) (operation, error) {
		hf := mech.HashOf(m.Type)
		if hf == nil {
			return nil, ck.E(ck.CKR_MECHANISM_INVALID)
		}
		if b, ok := m.Param.(mech.Bytes); m.Param != nil && (!ok || len(b) != 0) {
			return nil, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
		}
		return &digestOp{h: hf.New(), mech: m.Type}, nil
	})
}

// Digest hashes data in one part.
func (l *Library) Digest(h uint64, data []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpDigest, part: Single, fn: "C_Digest", in: data}, &dst)
}

// DigestUpdate feeds data.
func (l *Library) DigestUpdate(h uint64, data []byte) error {
	_, err := l.drive(h, opCall{kind: OpDigest, part: Update, fn: "C_DigestUpdate", in: data}, nil)
	return err
}

// DigestFinal finishes a multi-part digest.
func (l *Library) DigestFinal(h uint64, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpDigest, part: Final, fn: "C_DigestFinal"}, &dst)
}

// DigestKey feeds the value of secret key obj to session h's digest. Only
// a key whose value the token may reveal (a readable session key) can be
// digested; a key in the TPM is CKR_KEY_INDIGESTIBLE. The key is looked up
// first (with the operation checked active), so a bad key fails the update
// and ends the operation like any failed update.
func (l *Library) DigestKey(h, obj uint64) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	active := s.ops[OpDigest] != nil
	s.mu.Unlock()
	if !active {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	o, err := s.tok.object(obj)
	if err != nil {
		s.end(OpDigest)
		return ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	v, readable := o.Attrs[ck.CKA_VALUE]
	if o.class() != ck.CKO_SECRET_KEY || !readable {
		s.end(OpDigest)
		return ck.E(ck.CKR_KEY_INDIGESTIBLE)
	}
	return l.DigestUpdate(h, v)
}
