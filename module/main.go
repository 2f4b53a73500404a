// Command module is libtpm11.so: the PKCS#11 C ABI and nothing else. Each
// export (tpm11go_C_*, called by the C entry point C_* in entry.c, which
// never calls it in a forked child: see fork.c) decodes its C arguments,
// calls tpmtoken, and encodes the results; rv() is the one place an error
// becomes a CK_RV. Configuration is read in C_Initialize, never at load.
package main

/*
#include <stdlib.h>
#include "ck.h"
#include "fork.h"
*/
import "C"

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/version"
)

func main() {}

var (
	// stateMu is lock 1 of docs/design.md "Locks": read-held across every
	// call (C_Finalize waits for calls), write-held by C_Initialize/C_Finalize.
	stateMu sync.RWMutex
	library *tpmtoken.Library
	logger  = slog.New(slog.DiscardHandler)
)

var errNotInitialized = ck.E(ck.CKR_CRYPTOKI_NOT_INITIALIZED)

// lib returns the initialized library. Calls hold the read lock for their
// duration so C_Finalize waits for them instead of freeing under them.
func lib() (*tpmtoken.Library, func(), error) {
	stateMu.RLock()
	if library == nil {
		stateMu.RUnlock()
		return nil, func() {}, errNotInitialized
	}
	return library, unlockState, nil
}

// unlockState is stateMu.RUnlock as a value made once: a method value
// made in lib would be a new closure on the heap for every call.
var unlockState = stateMu.RUnlock

// rv turns an error into the CK_RV returned to C.
func rv(fn string, err error) C.CK_RV {
	r := ck.ToRV(err)
	if err != nil {
		if !isCKError(err) {
			logger.Error("unclassified error", "fn", fn, "err", err)
		} else if logger.Enabled(context.Background(), slog.LevelDebug) {
			// Asked first: the arguments would be boxed (allocated) for
			// a logger that drops them, on every call that fails or pends.
			logger.Debug("call failed", "fn", fn, "rv", ck.RVName(r), "err", err)
		}
	}
	return C.CK_RV(r)
}

// isCKError says whether err is, or wraps, a *ck.Error; errors.As only
// for a wrapped one (its target escapes: an allocation).
func isCKError(err error) bool {
	if _, ok := err.(*ck.Error); ok {
		return true
	}
	var ce *ck.Error
	return errors.As(err, &ce)
}

// recoverRV keeps a panic from crossing into C.
func recoverRV(fn string, out *C.CK_RV) {
	if r := recover(); r != nil {
		logger.Error("panic", "fn", fn, "panic", r, "stack", string(debug.Stack()))
		*out = C.CK_RV(ck.CKR_GENERAL_ERROR)
	}
}

// call runs f with the library and converts its error.
func call(fn string, f func(l *tpmtoken.Library) error) (out C.CK_RV) {
	defer recoverRV(fn, &out)
	l, done, err := lib()
	defer done()
	if err != nil {
		return rv(fn, err)
	}
	return rv(fn, f(l))
}

var errArgs = ck.E(ck.CKR_ARGUMENTS_BAD)

// goBytes copies n bytes from C memory; NULL with n > 0 is bad arguments.
func goBytes(p unsafe.Pointer, n C.CK_ULONG) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	if p == nil || uint64(n) > 1<<30 {
		return nil, errArgs
	}
	return append([]byte(nil), unsafe.Slice((*byte)(p), int(n))...), nil
}

// template decodes a CK_ATTRIBUTE array (a template attribute's own
// array by arrayValue).
func template(p C.CK_ATTRIBUTE_PTR, n C.CK_ULONG) ([]tpmtoken.Attr, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil || n > 1<<16 {
		return nil, errArgs
	}
	var out []tpmtoken.Attr
	for _, a := range unsafe.Slice(p, int(n)) {
		if ck.IsTemplate(ck.AttributeType(a._type)) {
			v, err := arrayValue(a)
			if err != nil {
				return nil, err
			}
			out = append(out, tpmtoken.Attr{Type: ck.AttributeType(a._type), Value: v})
			continue
		}
		v, err := goBytes(unsafe.Pointer(a.pValue), a.ulValueLen)
		if err != nil {
			return nil, ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
		}
		out = append(out, tpmtoken.Attr{Type: ck.AttributeType(a._type), Value: v})
	}
	return out, nil
}

// padded fills a fixed-size CK text field, blank-padded (never NUL).
func padded(dst unsafe.Pointer, size int, s string) {
	b := unsafe.Slice((*byte)(dst), size)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

//export tpm11go_C_Initialize
func tpm11go_C_Initialize(pInitArgs C.CK_VOID_PTR) (out C.CK_RV) {
	defer recoverRV("C_Initialize", &out)
	if pInitArgs != nil {
		a := (*C.CK_C_INITIALIZE_ARGS)(pInitArgs)
		if a.pReserved != nil {
			return C.CK_RV(ck.CKR_ARGUMENTS_BAD)
		}
		set := 0
		for _, f := range []unsafe.Pointer{unsafe.Pointer(a.CreateMutex), unsafe.Pointer(a.DestroyMutex), unsafe.Pointer(a.LockMutex), unsafe.Pointer(a.UnlockMutex)} {
			if f != nil {
				set++
			}
		}
		if set != 0 && set != 4 {
			return C.CK_RV(ck.CKR_ARGUMENTS_BAD)
		}
		// CKF_LIBRARY_CANT_CREATE_OS_THREADS is accepted: p11-kit sets it
		// for every module it loads (GnuTLS, p11tool), refusing it would
		// make the module unusable there, and the Go runtime's threads
		// were made when the library was loaded, not by this call.
		// Our own locks are used whether or not the host offers mutexes.
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	if library != nil {
		return C.CK_RV(ck.CKR_CRYPTOKI_ALREADY_INITIALIZED)
	}
	cfg := tpmtoken.LoadConfig(os.Getenv)
	logger = cfg.Logger()
	// Before the first connection: a child forked from now on closes its
	// copy of a connection to this swtpm (which serves one at a time).
	spec := C.CString(cfg.TPM)
	C.tpm11_fork_note_tpm(spec)
	C.free(unsafe.Pointer(spec))
	l, err := tpmtoken.Open(cfg)
	if err != nil {
		return rv("C_Initialize", err)
	}
	library = l
	return C.CK_RV(ck.CKR_OK)
}

//export tpm11go_C_Finalize
func tpm11go_C_Finalize(pReserved C.CK_VOID_PTR) (out C.CK_RV) {
	defer recoverRV("C_Finalize", &out)
	if pReserved != nil {
		return C.CK_RV(ck.CKR_ARGUMENTS_BAD)
	}
	// Before waiting for the calls in flight: one stuck on a TPM that
	// does not answer is given up instead of waited for (Closing).
	stateMu.RLock()
	if library != nil {
		library.Closing()
	}
	stateMu.RUnlock()
	stateMu.Lock()
	defer stateMu.Unlock()
	if library == nil {
		return C.CK_RV(ck.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	library.Close()
	library = nil
	return C.CK_RV(ck.CKR_OK)
}

//export tpm11go_C_GetInfo
func tpm11go_C_GetInfo(pInfo C.CK_INFO_PTR) C.CK_RV {
	return call("C_GetInfo", func(l *tpmtoken.Library) error {
		if pInfo == nil {
			return errArgs
		}
		pInfo.cryptokiVersion = C.CK_VERSION{major: 3, minor: 2}
		padded(unsafe.Pointer(&pInfo.manufacturerID), 32, "tpm11")
		pInfo.flags = 0
		padded(unsafe.Pointer(&pInfo.libraryDescription), 32, "tpm11 PKCS#11 for TPM 2.0")
		major, minor := version.MajorMinor()
		pInfo.libraryVersion = C.CK_VERSION{major: C.CK_BYTE(major), minor: C.CK_BYTE(minor)}
		return nil
	})
}
