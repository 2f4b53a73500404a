package main

/*
#include "ck.h"
*/
import "C"

import (
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Message-based signing and verification (3.0). Our signature mechanisms
// take no per-message parameter: a non-empty one is refused by the token.

// messageParam copies a per-message parameter.
func messageParam(p C.CK_VOID_PTR, n C.CK_ULONG) (mech.Param, error) {
	b, err := goBytes(unsafe.Pointer(p), n)
	if err != nil {
		return nil, ck.E(ck.CKR_ARGUMENTS_BAD)
	}
	return mech.Bytes(b), nil
}

// messageArgs copies a message call's parameter and its data (or part).
func messageArgs(p C.CK_VOID_PTR, n C.CK_ULONG, data C.CK_BYTE_PTR, dataLen C.CK_ULONG) (mech.Param, []byte, error) {
	param, err := messageParam(p, n)
	if err != nil {
		return nil, nil, err
	}
	b, err := goBytes(unsafe.Pointer(data), dataLen)
	return param, b, err
}

//export tpm11go_C_MessageSignInit
func tpm11go_C_MessageSignInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_MessageSignInit", tpmtoken.OpMessageSign, hSession, pMechanism, hKey, (*tpmtoken.Library).MessageSignInit)
}

//export tpm11go_C_SignMessage
func tpm11go_C_SignMessage(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_SignMessage", func(l *tpmtoken.Library) error {
		param, data, err := messageArgs(pParameter, ulParameterLen, pData, ulDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpMessageSign, tpmtoken.Single, len(data), pSignature, pulSignatureLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.SignMessage(uint64(hSession), param, data, dst)
		})
	})
}

//export tpm11go_C_SignMessageBegin
func tpm11go_C_SignMessageBegin(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG) C.CK_RV {
	return call("C_SignMessageBegin", func(l *tpmtoken.Library) error {
		param, err := messageParam(pParameter, ulParameterLen)
		if err != nil {
			return err
		}
		return l.MessageBegin(uint64(hSession), false, param)
	})
}

//export tpm11go_C_SignMessageNext
func tpm11go_C_SignMessageNext(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pDataPart C.CK_BYTE_PTR, ulDataPartLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_SignMessageNext", func(l *tpmtoken.Library) error {
		param, part, err := messageArgs(pParameter, ulParameterLen, pDataPart, ulDataPartLen)
		if err != nil {
			return err
		}
		if pulSignatureLen == nil { // not the last part
			_, err := l.SignMessageNext(uint64(hSession), param, part, false, tpmtoken.Dest{})
			return err
		}
		return output(l, hSession, tpmtoken.OpMessageSign, tpmtoken.Final, len(part), pSignature, pulSignatureLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.SignMessageNext(uint64(hSession), param, part, true, dst)
		})
	})
}

//export tpm11go_C_MessageSignFinal
func tpm11go_C_MessageSignFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_MessageSignFinal", func(l *tpmtoken.Library) error {
		return l.MessageFinal(uint64(hSession), false)
	})
}

//export tpm11go_C_MessageVerifyInit
func tpm11go_C_MessageVerifyInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_MessageVerifyInit", tpmtoken.OpMessageVerify, hSession, pMechanism, hKey, (*tpmtoken.Library).MessageVerifyInit)
}

//export tpm11go_C_VerifyMessage
func tpm11go_C_VerifyMessage(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifyMessage", func(l *tpmtoken.Library) error {
		param, data, err := messageArgs(pParameter, ulParameterLen, pData, ulDataLen)
		if err != nil {
			return err
		}
		sig, err := goBytes(unsafe.Pointer(pSignature), ulSignatureLen)
		if err != nil {
			return err
		}
		return l.VerifyMessage(uint64(hSession), param, data, sig)
	})
}

//export tpm11go_C_VerifyMessageBegin
func tpm11go_C_VerifyMessageBegin(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifyMessageBegin", func(l *tpmtoken.Library) error {
		param, err := messageParam(pParameter, ulParameterLen)
		if err != nil {
			return err
		}
		return l.MessageBegin(uint64(hSession), true, param)
	})
}

//export tpm11go_C_VerifyMessageNext
func tpm11go_C_VerifyMessageNext(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pDataPart C.CK_BYTE_PTR, ulDataPartLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifyMessageNext", func(l *tpmtoken.Library) error {
		param, part, err := messageArgs(pParameter, ulParameterLen, pDataPart, ulDataPartLen)
		if err != nil {
			return err
		}
		// A NULL signature means more parts follow; a signature ends the message.
		if pSignature == nil {
			return l.VerifyMessageNext(uint64(hSession), param, part, nil, false)
		}
		sig, err := goBytes(unsafe.Pointer(pSignature), ulSignatureLen)
		if err != nil {
			return err
		}
		return l.VerifyMessageNext(uint64(hSession), param, part, sig, true)
	})
}

//export tpm11go_C_MessageVerifyFinal
func tpm11go_C_MessageVerifyFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_MessageVerifyFinal", func(l *tpmtoken.Library) error {
		return l.MessageFinal(uint64(hSession), true)
	})
}
