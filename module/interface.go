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

// The rest of the 3.2 interface: recovery, C_VerifySignature*, operation
// state, C_DigestKey, dual-function updates, wrapping, validation flags.
// Each export is C_<name> behind the fork-safe C entry point.

//export tpm11go_C_SignRecoverInit
func tpm11go_C_SignRecoverInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_SignRecoverInit", tpmtoken.OpSignRecover, hSession, pMechanism, hKey, (*tpmtoken.Library).SignRecoverInit)
}

//export tpm11go_C_SignRecover
func tpm11go_C_SignRecover(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_SignRecover", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpSignRecover, pData, ulDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpSignRecover, tpmtoken.Single, len(in), pSignature, pulSignatureLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.SignRecover(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_VerifyRecoverInit
func tpm11go_C_VerifyRecoverInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_VerifyRecoverInit", tpmtoken.OpVerifyRecover, hSession, pMechanism, hKey, (*tpmtoken.Library).VerifyRecoverInit)
}

//export tpm11go_C_VerifyRecover
func tpm11go_C_VerifyRecover(hSession C.CK_SESSION_HANDLE, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG, pData C.CK_BYTE_PTR, pulDataLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_VerifyRecover", func(l *tpmtoken.Library) error {
		sig, err := input(l, hSession, tpmtoken.OpVerifyRecover, pSignature, ulSignatureLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpVerifyRecover, tpmtoken.Single, len(sig), pData, pulDataLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.VerifyRecover(uint64(hSession), sig, dst)
		})
	})
}

//export tpm11go_C_VerifySignatureInit
func tpm11go_C_VerifySignatureInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifySignatureInit", func(l *tpmtoken.Library) error {
		if pMechanism == nil { // ends the active verification (PKCS#11 3.x)
			return l.CancelOp(uint64(hSession), tpmtoken.OpVerifySignature)
		}
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		sig, err := goBytes(unsafe.Pointer(pSignature), ulSignatureLen)
		if err != nil {
			return err
		}
		return l.VerifySignatureInit(uint64(hSession), m, uint64(hKey), sig)
	})
}

//export tpm11go_C_VerifySignature
func tpm11go_C_VerifySignature(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifySignature", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpVerifySignature, pData, ulDataLen)
		if err != nil {
			return err
		}
		return l.VerifySignature(uint64(hSession), in)
	})
}

//export tpm11go_C_VerifySignatureUpdate
func tpm11go_C_VerifySignatureUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifySignatureUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpVerifySignature, pPart, ulPartLen)
		if err != nil {
			return err
		}
		return l.VerifySignatureUpdate(uint64(hSession), in)
	})
}

//export tpm11go_C_VerifySignatureFinal
func tpm11go_C_VerifySignatureFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_VerifySignatureFinal", func(l *tpmtoken.Library) error {
		return l.VerifySignatureFinal(uint64(hSession))
	})
}

//export tpm11go_C_GetSessionValidationFlags
func tpm11go_C_GetSessionValidationFlags(hSession C.CK_SESSION_HANDLE, typ C.CK_SESSION_VALIDATION_FLAGS_TYPE, pFlags C.CK_FLAGS_PTR) C.CK_RV {
	return call("C_GetSessionValidationFlags", func(l *tpmtoken.Library) error {
		if pFlags == nil {
			return errArgs
		}
		f, err := l.SessionValidationFlags(uint64(hSession), uint64(typ))
		if err != nil {
			return err
		}
		*pFlags = C.CK_FLAGS(f)
		return nil
	})
}

//export tpm11go_C_GetOperationState
func tpm11go_C_GetOperationState(hSession C.CK_SESSION_HANDLE, pOperationState C.CK_BYTE_PTR, pulOperationStateLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_GetOperationState", func(l *tpmtoken.Library) error {
		if pulOperationStateLen == nil {
			return errArgs
		}
		state, err := l.OperationState(uint64(hSession))
		if err != nil {
			return err
		}
		return fill(pOperationState, pulOperationStateLen, state)
	})
}

//export tpm11go_C_SetOperationState
func tpm11go_C_SetOperationState(hSession C.CK_SESSION_HANDLE, pOperationState C.CK_BYTE_PTR, ulOperationStateLen C.CK_ULONG, hEncryptionKey C.CK_OBJECT_HANDLE, hAuthenticationKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return call("C_SetOperationState", func(l *tpmtoken.Library) error {
		state, err := goBytes(unsafe.Pointer(pOperationState), ulOperationStateLen)
		if err != nil || len(state) == 0 {
			return errArgs
		}
		return l.SetOperationState(uint64(hSession), state, uint64(hEncryptionKey), uint64(hAuthenticationKey))
	})
}

//export tpm11go_C_DigestKey
func tpm11go_C_DigestKey(hSession C.CK_SESSION_HANDLE, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return call("C_DigestKey", func(l *tpmtoken.Library) error {
		return l.DigestKey(uint64(hSession), uint64(hKey))
	})
}

// dual is a dual-function update: the output is the cipher half's.
func dual(l *tpmtoken.Library, h C.CK_SESSION_HANDLE, kind tpmtoken.OpKind, other tpmtoken.OpKind, p C.CK_BYTE_PTR, n C.CK_ULONG,
	out C.CK_BYTE_PTR, pulOut C.CK_ULONG_PTR, run func(in []byte, dst tpmtoken.Dest) ([]byte, error)) error {
	in, err := input(l, h, kind, p, n)
	if err != nil {
		l.EndOperation(uint64(h), other)
		return err
	}
	return output(l, h, kind, tpmtoken.Update, len(in), out, pulOut, func(dst tpmtoken.Dest) ([]byte, error) { return run(in, dst) })
}

//export tpm11go_C_DigestEncryptUpdate
func tpm11go_C_DigestEncryptUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG, pEncryptedPart C.CK_BYTE_PTR, pulEncryptedPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DigestEncryptUpdate", func(l *tpmtoken.Library) error {
		return dual(l, hSession, tpmtoken.OpEncrypt, tpmtoken.OpDigest, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen, func(in []byte, dst tpmtoken.Dest) ([]byte, error) {
			return l.DigestEncryptUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_DecryptDigestUpdate
func tpm11go_C_DecryptDigestUpdate(hSession C.CK_SESSION_HANDLE, pEncryptedPart C.CK_BYTE_PTR, ulEncryptedPartLen C.CK_ULONG, pPart C.CK_BYTE_PTR, pulPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DecryptDigestUpdate", func(l *tpmtoken.Library) error {
		return dual(l, hSession, tpmtoken.OpDecrypt, tpmtoken.OpDigest, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen, func(in []byte, dst tpmtoken.Dest) ([]byte, error) {
			return l.DecryptDigestUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_SignEncryptUpdate
func tpm11go_C_SignEncryptUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG, pEncryptedPart C.CK_BYTE_PTR, pulEncryptedPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_SignEncryptUpdate", func(l *tpmtoken.Library) error {
		return dual(l, hSession, tpmtoken.OpEncrypt, tpmtoken.OpSign, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen, func(in []byte, dst tpmtoken.Dest) ([]byte, error) {
			return l.SignEncryptUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_DecryptVerifyUpdate
func tpm11go_C_DecryptVerifyUpdate(hSession C.CK_SESSION_HANDLE, pEncryptedPart C.CK_BYTE_PTR, ulEncryptedPartLen C.CK_ULONG, pPart C.CK_BYTE_PTR, pulPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DecryptVerifyUpdate", func(l *tpmtoken.Library) error {
		return dual(l, hSession, tpmtoken.OpDecrypt, tpmtoken.OpVerify, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen, func(in []byte, dst tpmtoken.Dest) ([]byte, error) {
			return l.DecryptVerifyUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_WrapKey
func tpm11go_C_WrapKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hWrappingKey C.CK_OBJECT_HANDLE, hKey C.CK_OBJECT_HANDLE, pWrappedKey C.CK_BYTE_PTR, pulWrappedKeyLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_WrapKey", func(l *tpmtoken.Library) error {
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		if pulWrappedKeyLen == nil {
			return errArgs
		}
		h, wk, k := uint64(hSession), uint64(hWrappingKey), uint64(hKey)
		n, err := l.WrapKeyLen(h, m, wk, k)
		if err != nil {
			return err
		}
		if pWrappedKey == nil {
			*pulWrappedKeyLen = C.CK_ULONG(n)
			return nil
		}
		if bufLen(*pulWrappedKeyLen) < n {
			*pulWrappedKeyLen = C.CK_ULONG(n)
			return ck.TooSmall(n)
		}
		out, err := l.WrapKey(h, m, wk, k)
		if err != nil {
			return err
		}
		return fill(pWrappedKey, pulWrappedKeyLen, out)
	})
}

//export tpm11go_C_UnwrapKey
func tpm11go_C_UnwrapKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hUnwrappingKey C.CK_OBJECT_HANDLE, pWrappedKey C.CK_BYTE_PTR, ulWrappedKeyLen C.CK_ULONG, pTemplate C.CK_ATTRIBUTE_PTR, ulAttributeCount C.CK_ULONG, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_UnwrapKey", func(l *tpmtoken.Library) error {
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		wrapped, err := goBytes(unsafe.Pointer(pWrappedKey), ulWrappedKeyLen)
		if err != nil || phKey == nil {
			return errArgs
		}
		t, err := template(pTemplate, ulAttributeCount)
		if err != nil {
			return err
		}
		k, err := l.UnwrapKey(uint64(hSession), m, uint64(hUnwrappingKey), wrapped, t)
		if err != nil {
			return err
		}
		*phKey = C.CK_OBJECT_HANDLE(k)
		return nil
	})
}

// fill copies out into a caller's buffer by the length convention: NULL
// asks for the length, a short buffer is CKR_BUFFER_TOO_SMALL.
func fill(buf C.CK_BYTE_PTR, pulLen C.CK_ULONG_PTR, out []byte) error {
	if buf == nil {
		*pulLen = C.CK_ULONG(len(out))
		return nil
	}
	if bufLen(*pulLen) < len(out) {
		*pulLen = C.CK_ULONG(len(out))
		return ck.TooSmall(len(out))
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(out)), out)
	*pulLen = C.CK_ULONG(len(out))
	return nil
}
