package mech

import (
	"encoding"
	"hash"

	"github.com/tpm11/tpm11/ck"
)

// Input is what a signature or verification has been fed: hashed as it
// comes for the hashing mechanisms, kept whole for the others.
type Input struct {
	h   hash.Hash
	buf []byte
	sum [64]byte // Value's digest: no allocation per signature
}

// maxInput bounds what an operation without a running hash accumulates
// (HMAC input, sent to the TPM in 1 KiB pieces at the end).
const maxInput = 1 << 26

// Write feeds data; CKR_DATA_LEN_RANGE once the kept input is too long.
func (in *Input) Write(data []byte) error {
	if in.h != nil {
		in.h.Write(data)
		return nil
	}
	if len(in.buf)+len(data) > maxInput {
		return ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	in.buf = append(in.buf, data...)
	return nil
}

// Value is the digest, or the data as fed.
func (in *Input) Value() []byte {
	if in.h != nil {
		return in.h.Sum(in.sum[:0])
	}
	return in.buf
}

// State is the input's state for C_GetOperationState: the running hash's
// own marshalled state, or the data kept.
func (in *Input) State() ([]byte, error) {
	if in.h == nil {
		return append([]byte{0}, in.buf...), nil
	}
	m, ok := in.h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, ck.E(ck.CKR_STATE_UNSAVEABLE)
	}
	b, err := m.MarshalBinary()
	return append([]byte{1}, b...), err
}

// SetState restores what State gave, into an input of the same mechanism.
func (in *Input) SetState(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == 0 && in.h == nil:
		in.buf = append([]byte(nil), b[1:]...)
		return nil
	case len(b) > 0 && b[0] == 1 && in.h != nil:
		if u, ok := in.h.(encoding.BinaryUnmarshaler); ok && u.UnmarshalBinary(b[1:]) == nil {
			return nil
		}
	}
	return ck.E(ck.CKR_SAVED_STATE_INVALID)
}
