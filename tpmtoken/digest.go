package tpmtoken

import (
	"hash"

	"github.com/tpm11/tpm11/ck"
)

// Digests run in software: hashing public data gains nothing from the TPM
// and would serialize every caller behind it.
type digestOp struct{ h hash.Hash }

// DigestInit starts a digest. No login needed.
func (l *Library) DigestInit(h uint64, m Mechanism) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	hf, ok := ckmHash[m.Type]
	if !ok {
		return ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if len(m.Param) != 0 {
		return ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.digest != nil {
		return ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	s.digest = &digestOp{h: hf.New()}
	return nil
}

func (l *Library) digestOp(h uint64) (*Session, *digestOp, error) {
	return activeOp(l, h, func(s *Session) *digestOp { return s.digest })
}

// Digest hashes data in one part; length rules as for Sign.
func (l *Library) Digest(h uint64, data []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.digestOp(h)
	if err != nil {
		return nil, 0, err
	}
	return s.finishDigest(op, data, outCap, query)
}

// DigestUpdate feeds data.
func (l *Library) DigestUpdate(h uint64, data []byte) error {
	_, op, err := l.digestOp(h)
	if err == nil {
		op.h.Write(data)
	}
	return err
}

// DigestFinal finishes a multi-part digest.
func (l *Library) DigestFinal(h uint64, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.digestOp(h)
	if err != nil {
		return nil, 0, err
	}
	return s.finishDigest(op, nil, outCap, query)
}

// finishDigest hashes the last data and ends the operation, unless the
// call only asks for (or lacks room for) the length.
func (s *Session) finishDigest(op *digestOp, last []byte, outCap int, query bool) ([]byte, int, error) {
	n := op.h.Size()
	if answered, err := sized(n, outCap, query); answered {
		return nil, n, err
	}
	op.h.Write(last)
	s.mu.Lock()
	s.digest = nil
	s.mu.Unlock()
	return op.h.Sum(nil), n, nil
}
