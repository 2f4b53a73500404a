package mech

import (
	"hash"

	"github.com/tpm11/tpm11/ck"
)

// Input is what a signature or verification has been fed: hashed as it
// comes for the hashing mechanisms, kept whole for the others.
type Input struct {
	h   hash.Hash
	buf []byte
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
		return in.h.Sum(nil)
	}
	return in.buf
}
