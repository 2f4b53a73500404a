package main

/*
#include "ck.h"
*/
import "C"

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// tpm11go_openSessionSyncOnly is C_OpenSession in the 2.40 and 3.0 function
// lists (lists.c, through openSessionSyncOnly in entry.c): their callers
// have no C_AsyncComplete, so CKF_ASYNC_SESSION is refused as by a token
// without asynchronous sessions. Not exported from the library
// (exports.map).
//
//export tpm11go_openSessionSyncOnly
func tpm11go_openSessionSyncOnly(slotID C.CK_SLOT_ID, flags C.CK_FLAGS, pApplication C.CK_VOID_PTR, Notify C.CK_NOTIFY, phSession C.CK_SESSION_HANDLE_PTR) C.CK_RV {
	return call("C_OpenSession", func(l *tpmtoken.Library) error {
		if phSession == nil {
			return errArgs
		}
		h, err := l.OpenSyncSession(uint64(slotID), ck.Flags(flags))
		if err != nil {
			return err
		}
		*phSession = C.CK_SESSION_HANDLE(h)
		return nil
	})
}
