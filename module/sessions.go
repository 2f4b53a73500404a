package main

/*
#include "ck.h"
*/
import "C"

import (
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

//export tpm11go_C_OpenSession
func tpm11go_C_OpenSession(slotID C.CK_SLOT_ID, flags C.CK_FLAGS, pApplication C.CK_VOID_PTR, Notify C.CK_NOTIFY, phSession C.CK_SESSION_HANDLE_PTR) C.CK_RV {
	return call("C_OpenSession", func(l *tpmtoken.Library) error {
		if phSession == nil {
			return errArgs
		}
		h, err := l.OpenSession(uint64(slotID), ck.Flags(flags))
		if err != nil {
			return err
		}
		*phSession = C.CK_SESSION_HANDLE(h)
		return nil
	})
}

//export tpm11go_C_CloseSession
func tpm11go_C_CloseSession(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_CloseSession", func(l *tpmtoken.Library) error { return l.CloseSession(uint64(hSession)) })
}

//export tpm11go_C_CloseAllSessions
func tpm11go_C_CloseAllSessions(slotID C.CK_SLOT_ID) C.CK_RV {
	return call("C_CloseAllSessions", func(l *tpmtoken.Library) error { return l.CloseAllSessions(uint64(slotID)) })
}

//export tpm11go_C_GetSessionInfo
func tpm11go_C_GetSessionInfo(hSession C.CK_SESSION_HANDLE, pInfo C.CK_SESSION_INFO_PTR) C.CK_RV {
	return call("C_GetSessionInfo", func(l *tpmtoken.Library) error {
		if pInfo == nil {
			return errArgs
		}
		info, err := l.SessionInfo(uint64(hSession))
		if err != nil {
			return err
		}
		pInfo.slotID, pInfo.state, pInfo.flags, pInfo.ulDeviceError = C.CK_SLOT_ID(info.Slot), C.CK_STATE(info.State), C.CK_FLAGS(info.Flags), 0
		return nil
	})
}

//export tpm11go_C_Login
func tpm11go_C_Login(hSession C.CK_SESSION_HANDLE, userType C.CK_USER_TYPE, pPin C.CK_UTF8CHAR_PTR, ulPinLen C.CK_ULONG) C.CK_RV {
	return call("C_Login", func(l *tpmtoken.Library) error {
		pin, err := goBytes(unsafe.Pointer(pPin), ulPinLen)
		if err != nil {
			return err
		}
		defer clear(pin) // no copy of a PIN outlives the call
		return l.Login(uint64(hSession), ck.UserType(userType), pin)
	})
}

//export tpm11go_C_Logout
func tpm11go_C_Logout(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_Logout", func(l *tpmtoken.Library) error { return l.Logout(uint64(hSession)) })
}

//export tpm11go_C_GenerateRandom
func tpm11go_C_GenerateRandom(hSession C.CK_SESSION_HANDLE, RandomData C.CK_BYTE_PTR, ulRandomLen C.CK_ULONG) C.CK_RV {
	return call("C_GenerateRandom", func(l *tpmtoken.Library) error {
		if RandomData == nil && ulRandomLen > 0 {
			return errArgs
		}
		if ulRandomLen > 1<<20 {
			return errArgs
		}
		n := int(ulRandomLen)
		b, err := l.GenerateRandom(uint64(hSession), n, tpmtoken.Dest{Cap: n, Ref: outBuf(RandomData)})
		if err != nil {
			return err
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(RandomData)), len(b)), b)
		return nil
	})
}

//export tpm11go_C_SeedRandom
func tpm11go_C_SeedRandom(hSession C.CK_SESSION_HANDLE, pSeed C.CK_BYTE_PTR, ulSeedLen C.CK_ULONG) C.CK_RV {
	return call("C_SeedRandom", func(l *tpmtoken.Library) error {
		seed, err := goBytes(unsafe.Pointer(pSeed), ulSeedLen)
		if err != nil {
			return err
		}
		return l.SeedRandom(uint64(hSession), seed)
	})
}
