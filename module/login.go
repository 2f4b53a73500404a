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

//export tpm11go_C_LoginUser
func tpm11go_C_LoginUser(hSession C.CK_SESSION_HANDLE, userType C.CK_USER_TYPE, pPin C.CK_UTF8CHAR_PTR, ulPinLen C.CK_ULONG, pUsername C.CK_UTF8CHAR_PTR, ulUsernameLen C.CK_ULONG) C.CK_RV {
	return call("C_LoginUser", func(l *tpmtoken.Library) error {
		pin, err := goBytes(unsafe.Pointer(pPin), ulPinLen)
		if err != nil {
			return err
		}
		defer clear(pin) // no copy of a PIN outlives the call
		name, err := goBytes(unsafe.Pointer(pUsername), ulUsernameLen)
		if err != nil {
			return err
		}
		return l.LoginUser(uint64(hSession), ck.UserType(userType), pin, name)
	})
}
