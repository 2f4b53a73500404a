package main

/*
#include "ck.h"
*/
import "C"

import (
	"errors"
	"math"
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// output implements the spec's convention for variable-length output
// (§5.2) for part of session h's operation kind, here and nowhere else: a
// NULL buffer asks for the length (OutputLen; it neither runs the
// operation nor ends it). Otherwise run gets the caller's capacity and the
// token checks it in the same step that runs the operation (tpmtoken's
// drive): it returns CKR_BUFFER_TOO_SMALL with the length needed, or at
// most capacity bytes, which are copied here. dst names the caller's
// buffer so a pending operation can fill it at completion.
func output(l *tpmtoken.Library, h C.CK_SESSION_HANDLE, kind tpmtoken.OpKind, part tpmtoken.Part, inLen int,
	buf C.CK_BYTE_PTR, pulLen C.CK_ULONG_PTR, run func(dst tpmtoken.Dest) ([]byte, error)) error {
	hs := uint64(h)
	if pulLen == nil {
		l.EndOperation(hs, kind) // bad arguments end the operation like any failure
		return errArgs
	}
	if buf == nil {
		n, _, err := l.OutputLen(hs, kind, part, inLen)
		if err != nil {
			return err
		}
		*pulLen = C.CK_ULONG(n)
		return nil
	}
	capacity := bufLen(*pulLen)
	out, err := run(tpmtoken.Dest{Cap: capacity, Ref: outBuf(buf)})
	if err != nil {
		if ck.ToRV(err) == ck.CKR_BUFFER_TOO_SMALL {
			*pulLen = C.CK_ULONG(needed(err))
		}
		return err // CKR_PENDING included: *pulLen is not written after it
	}
	if len(out) > capacity {
		// The token never returns more than the capacity it was given;
		// this guard keeps any future path from writing past the buffer.
		return ck.Errorf(ck.CKR_GENERAL_ERROR, "%d bytes of output for a %d-byte buffer", len(out), capacity)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(out)), out)
	*pulLen = C.CK_ULONG(len(out))
	return nil
}

// needed is the length a CKR_BUFFER_TOO_SMALL error asks for. (Only here:
// the errors.As target is put on the heap, and a call that pends must not
// allocate.)
func needed(err error) uint64 {
	var ce *ck.Error
	if errors.As(err, &ce) {
		return ce.Needed
	}
	return 0
}

// bufLen is a CK_ULONG buffer length as an int: lengths are CK_ULONG, so
// a huge length is a big buffer, never a negative one.
func bufLen(n C.CK_ULONG) int {
	if uint64(n) > math.MaxInt {
		return math.MaxInt
	}
	return int(n)
}

// inputView is input for a call that copies or hashes its input before it
// returns (C_Sign: mech.Input.Write): the C memory itself, not a copy (a
// C_Sign that pends allocates nothing, issue 25). Nothing may keep it.
func inputView(l *tpmtoken.Library, h C.CK_SESSION_HANDLE, kind tpmtoken.OpKind, p C.CK_BYTE_PTR, n C.CK_ULONG) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	if p == nil || uint64(n) > 1<<30 {
		l.EndOperation(uint64(h), kind)
		return nil, errArgs
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)), nil
}

// input copies an operation's input from C memory; bad arguments end the
// operation like any failure.
func input(l *tpmtoken.Library, h C.CK_SESSION_HANDLE, kind tpmtoken.OpKind, p C.CK_BYTE_PTR, n C.CK_ULONG) ([]byte, error) {
	b, err := goBytes(unsafe.Pointer(p), n)
	if err != nil {
		l.EndOperation(uint64(h), kind)
	}
	return b, err
}
