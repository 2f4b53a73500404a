package main

/*
#include "ck.h"
*/
import "C"

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

//export tpm11go_C_GetFunctionStatus
func tpm11go_C_GetFunctionStatus(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_GetFunctionStatus", func(l *tpmtoken.Library) error { return l.NotParallel(uint64(hSession)) })
}

//export tpm11go_C_CancelFunction
func tpm11go_C_CancelFunction(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_CancelFunction", func(l *tpmtoken.Library) error { return l.NotParallel(uint64(hSession)) })
}

// C_WaitForSlotEvent does not run under call(): calls hold stateMu's read
// lock for their duration and C_Finalize takes the write lock, so a caller
// blocked with the lock held would keep C_Finalize (and, behind its pending
// write lock, every other call) waiting for an event that cannot come. The
// lock is held only to find the library; C_Finalize's Close then wakes the
// waiter with CKR_CRYPTOKI_NOT_INITIALIZED.
//
//export tpm11go_C_WaitForSlotEvent
func tpm11go_C_WaitForSlotEvent(flags C.CK_FLAGS, pSlot C.CK_SLOT_ID_PTR, pReserved C.CK_VOID_PTR) (out C.CK_RV) {
	const fn = "C_WaitForSlotEvent"
	defer recoverRV(fn, &out)
	l, done, err := lib()
	done()
	if err != nil {
		return rv(fn, err)
	}
	if pReserved != nil || pSlot == nil {
		return rv(fn, errArgs)
	}
	id, err := l.WaitForSlotEvent(ck.Flags(flags)&ck.CKF_DONT_BLOCK == 0)
	if err != nil {
		return rv(fn, err)
	}
	*pSlot = C.CK_SLOT_ID(id)
	return C.CK_RV(ck.CKR_OK)
}
