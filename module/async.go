package main

/*
#include "ck.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// outBuf is where a pending operation's result goes: the caller's buffer,
// kept as an address (never a Go pointer) until C_AsyncComplete copies into
// it on the caller's thread (its capacity comes back as Result.OutCap). It
// points into C memory, so holding it in Go memory breaks no cgo pointer
// rule; being pointer-shaped, it goes into tpmtoken.Dest.Ref (an any)
// without an allocation (issue 25: a C_Sign that pends allocates nothing).
type outBuf unsafe.Pointer

// functionName reads a NUL-terminated name of bounded length.
func functionName(p C.CK_UTF8CHAR_PTR) (string, error) {
	if p == nil {
		return "", errArgs
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), 64)
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), nil
		}
	}
	return "", errArgs
}

//export tpm11go_C_AsyncComplete
func tpm11go_C_AsyncComplete(hSession C.CK_SESSION_HANDLE, pFunctionName C.CK_UTF8CHAR_PTR, pResult C.CK_ASYNC_DATA_PTR) C.CK_RV {
	return call("C_AsyncComplete", func(l *tpmtoken.Library) error {
		name, err := functionName(pFunctionName)
		if err != nil {
			return err
		}
		if pResult != nil && pResult.ulVersion != 0 {
			return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "CK_ASYNC_DATA.ulVersion must be 0")
		}
		res, consumed, err := l.AsyncComplete(uint64(hSession), name, pResult != nil)
		if !consumed || pResult == nil {
			return err
		}
		if b, ok := res.Out.(outBuf); ok {
			pResult.pValue = C.CK_BYTE_PTR(b)
			if err == nil && b != nil && len(res.Data) <= res.OutCap {
				copy(unsafe.Slice((*byte)(b), len(res.Data)), res.Data)
			} else if err == nil && len(res.Data) > 0 {
				err = errors.New("pending result larger than its buffer")
			}
		}
		pResult.ulValue = C.CK_ULONG(len(res.Data))
		if len(res.Objects) > 0 {
			pResult.hObject = C.CK_OBJECT_HANDLE(res.Objects[0])
		}
		if len(res.Objects) > 1 {
			pResult.hAdditionalObject = C.CK_OBJECT_HANDLE(res.Objects[1])
		}
		return err
	})
}

//export tpm11go_C_SessionCancel
func tpm11go_C_SessionCancel(hSession C.CK_SESSION_HANDLE, flags C.CK_FLAGS) C.CK_RV {
	return call("C_SessionCancel", func(l *tpmtoken.Library) error {
		return l.SessionCancel(uint64(hSession), ck.Flags(flags))
	})
}

//export tpm11go_C_AsyncGetID
func tpm11go_C_AsyncGetID(hSession C.CK_SESSION_HANDLE, pFunctionName C.CK_UTF8CHAR_PTR, pulID C.CK_ULONG_PTR) C.CK_RV {
	return call("C_AsyncGetID", func(l *tpmtoken.Library) error {
		name, err := functionName(pFunctionName)
		if err != nil || pulID == nil {
			return errArgs
		}
		id, err := l.AsyncGetID(uint64(hSession), name)
		if err != nil {
			return err
		}
		*pulID = C.CK_ULONG(id)
		return nil
	})
}

//export tpm11go_C_AsyncJoin
func tpm11go_C_AsyncJoin(hSession C.CK_SESSION_HANDLE, pFunctionName C.CK_UTF8CHAR_PTR, ulID C.CK_ULONG, pData C.CK_BYTE_PTR, ulData C.CK_ULONG) C.CK_RV {
	return call("C_AsyncJoin", func(l *tpmtoken.Library) error {
		name, err := functionName(pFunctionName)
		if err != nil {
			return err
		}
		if pData == nil {
			ulData = 0
		}
		n := bufLen(ulData)
		return l.AsyncJoin(uint64(hSession), name, uint64(ulID), tpmtoken.Dest{Cap: n, Ref: outBuf(pData)})
	})
}
