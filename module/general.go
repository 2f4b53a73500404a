package main

/*
#include "ck.h"
*/
import "C"

import (
	"github.com/tpm11/tpm11/tpmtoken"
)

//export C_GetFunctionStatus
func C_GetFunctionStatus(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_GetFunctionStatus", func(l *tpmtoken.Library) error { return l.NotParallel(uint64(hSession)) })
}

//export C_CancelFunction
func C_CancelFunction(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_CancelFunction", func(l *tpmtoken.Library) error { return l.NotParallel(uint64(hSession)) })
}
