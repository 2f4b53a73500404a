package main

/*
#include "ck.h"
*/
import "C"

import (
	"github.com/tpm11/tpm11/tpmtoken"
)

//export tpm11go_C_SignInit
func tpm11go_C_SignInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_SignInit", tpmtoken.OpSign, hSession, pMechanism, hKey, (*tpmtoken.Library).SignInit)
}

//export tpm11go_C_Sign
func tpm11go_C_Sign(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_Sign", func(l *tpmtoken.Library) error {
		in, err := inputView(l, hSession, tpmtoken.OpSign, pData, ulDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpSign, tpmtoken.Single, len(in), pSignature, pulSignatureLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.Sign(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_SignUpdate
func tpm11go_C_SignUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) C.CK_RV {
	return call("C_SignUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpSign, pPart, ulPartLen)
		if err != nil {
			return err
		}
		return l.SignUpdate(uint64(hSession), in)
	})
}

//export tpm11go_C_SignFinal
func tpm11go_C_SignFinal(hSession C.CK_SESSION_HANDLE, pSignature C.CK_BYTE_PTR, pulSignatureLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_SignFinal", func(l *tpmtoken.Library) error {
		return output(l, hSession, tpmtoken.OpSign, tpmtoken.Final, 0, pSignature, pulSignatureLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.SignFinal(uint64(hSession), dst)
		})
	})
}

//export tpm11go_C_VerifyInit
func tpm11go_C_VerifyInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_VerifyInit", tpmtoken.OpVerify, hSession, pMechanism, hKey, (*tpmtoken.Library).VerifyInit)
}

//export tpm11go_C_Verify
func tpm11go_C_Verify(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) C.CK_RV {
	return call("C_Verify", func(l *tpmtoken.Library) error {
		data, err := input(l, hSession, tpmtoken.OpVerify, pData, ulDataLen)
		if err != nil {
			return err
		}
		sig, err := input(l, hSession, tpmtoken.OpVerify, pSignature, ulSignatureLen)
		if err != nil {
			return err
		}
		return l.Verify(uint64(hSession), data, sig)
	})
}

//export tpm11go_C_VerifyUpdate
func tpm11go_C_VerifyUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifyUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpVerify, pPart, ulPartLen)
		if err != nil {
			return err
		}
		return l.VerifyUpdate(uint64(hSession), in)
	})
}

//export tpm11go_C_VerifyFinal
func tpm11go_C_VerifyFinal(hSession C.CK_SESSION_HANDLE, pSignature C.CK_BYTE_PTR, ulSignatureLen C.CK_ULONG) C.CK_RV {
	return call("C_VerifyFinal", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpVerify, pSignature, ulSignatureLen)
		if err != nil {
			return err
		}
		return l.VerifyFinal(uint64(hSession), in)
	})
}

//export tpm11go_C_DigestInit
func tpm11go_C_DigestInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR) C.CK_RV {
	return call("C_DigestInit", func(l *tpmtoken.Library) error {
		if pMechanism == nil { // ends the active digest (PKCS#11 3.x)
			return l.CancelOp(uint64(hSession), tpmtoken.OpDigest)
		}
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		return l.DigestInit(uint64(hSession), m)
	})
}

//export tpm11go_C_Digest
func tpm11go_C_Digest(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pDigest C.CK_BYTE_PTR, pulDigestLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_Digest", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpDigest, pData, ulDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpDigest, tpmtoken.Single, len(in), pDigest, pulDigestLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.Digest(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_DigestUpdate
func tpm11go_C_DigestUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG) C.CK_RV {
	return call("C_DigestUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpDigest, pPart, ulPartLen)
		if err != nil {
			return err
		}
		return l.DigestUpdate(uint64(hSession), in)
	})
}

//export tpm11go_C_DigestFinal
func tpm11go_C_DigestFinal(hSession C.CK_SESSION_HANDLE, pDigest C.CK_BYTE_PTR, pulDigestLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DigestFinal", func(l *tpmtoken.Library) error {
		return output(l, hSession, tpmtoken.OpDigest, tpmtoken.Final, 0, pDigest, pulDigestLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.DigestFinal(uint64(hSession), dst)
		})
	})
}

//export tpm11go_C_DecryptInit
func tpm11go_C_DecryptInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_DecryptInit", tpmtoken.OpDecrypt, hSession, pMechanism, hKey, (*tpmtoken.Library).DecryptInit)
}

//export tpm11go_C_Decrypt
func tpm11go_C_Decrypt(hSession C.CK_SESSION_HANDLE, pEncryptedData C.CK_BYTE_PTR, ulEncryptedDataLen C.CK_ULONG, pData C.CK_BYTE_PTR, pulDataLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_Decrypt", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpDecrypt, pEncryptedData, ulEncryptedDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpDecrypt, tpmtoken.Single, len(in), pData, pulDataLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.Decrypt(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_DecryptUpdate
func tpm11go_C_DecryptUpdate(hSession C.CK_SESSION_HANDLE, pEncryptedPart C.CK_BYTE_PTR, ulEncryptedPartLen C.CK_ULONG, pPart C.CK_BYTE_PTR, pulPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DecryptUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpDecrypt, pEncryptedPart, ulEncryptedPartLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpDecrypt, tpmtoken.Update, len(in), pPart, pulPartLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.DecryptUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_DecryptFinal
func tpm11go_C_DecryptFinal(hSession C.CK_SESSION_HANDLE, pLastPart C.CK_BYTE_PTR, pulLastPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_DecryptFinal", func(l *tpmtoken.Library) error {
		return output(l, hSession, tpmtoken.OpDecrypt, tpmtoken.Final, 0, pLastPart, pulLastPartLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.DecryptFinal(uint64(hSession), dst)
		})
	})
}

//export tpm11go_C_EncryptInit
func tpm11go_C_EncryptInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return keyInit("C_EncryptInit", tpmtoken.OpEncrypt, hSession, pMechanism, hKey, (*tpmtoken.Library).EncryptInit)
}

//export tpm11go_C_Encrypt
func tpm11go_C_Encrypt(hSession C.CK_SESSION_HANDLE, pData C.CK_BYTE_PTR, ulDataLen C.CK_ULONG, pEncryptedData C.CK_BYTE_PTR, pulEncryptedDataLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_Encrypt", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpEncrypt, pData, ulDataLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpEncrypt, tpmtoken.Single, len(in), pEncryptedData, pulEncryptedDataLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.Encrypt(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_EncryptUpdate
func tpm11go_C_EncryptUpdate(hSession C.CK_SESSION_HANDLE, pPart C.CK_BYTE_PTR, ulPartLen C.CK_ULONG, pEncryptedPart C.CK_BYTE_PTR, pulEncryptedPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_EncryptUpdate", func(l *tpmtoken.Library) error {
		in, err := input(l, hSession, tpmtoken.OpEncrypt, pPart, ulPartLen)
		if err != nil {
			return err
		}
		return output(l, hSession, tpmtoken.OpEncrypt, tpmtoken.Update, len(in), pEncryptedPart, pulEncryptedPartLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.EncryptUpdate(uint64(hSession), in, dst)
		})
	})
}

//export tpm11go_C_EncryptFinal
func tpm11go_C_EncryptFinal(hSession C.CK_SESSION_HANDLE, pLastEncryptedPart C.CK_BYTE_PTR, pulLastEncryptedPartLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_EncryptFinal", func(l *tpmtoken.Library) error {
		return output(l, hSession, tpmtoken.OpEncrypt, tpmtoken.Final, 0, pLastEncryptedPart, pulLastEncryptedPartLen, func(dst tpmtoken.Dest) ([]byte, error) {
			return l.EncryptFinal(uint64(hSession), dst)
		})
	})
}
