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

// Message-based encryption and decryption with CKM_AES_CCM (3.0), a
// message in one call or in parts. The per-message parameter is CK_CCM_MESSAGE_PARAMS;
// an encryption writes the nonce it used into pNonce and the MAC into
// pMAC (the token runs these calls to their end, so both are known when
// the call returns).

// ccmMessageParam decodes a CK_CCM_MESSAGE_PARAMS: a wrong size, or a
// pointer missing where its length says bytes are, is
// CKR_MECHANISM_PARAM_INVALID.
func ccmMessageParam(p C.CK_VOID_PTR, n C.CK_ULONG, decrypt bool) (*C.CK_CCM_MESSAGE_PARAMS, *mech.CCMMessageParams, error) {
	bad := ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the parameter is not a CK_CCM_MESSAGE_PARAMS")
	if p == nil || uintptr(n) != unsafe.Sizeof(C.CK_CCM_MESSAGE_PARAMS{}) {
		return nil, nil, bad
	}
	c := (*C.CK_CCM_MESSAGE_PARAMS)(unsafe.Pointer(p))
	nonce, err := goBytes(unsafe.Pointer(c.pNonce), c.ulNonceLen)
	if err != nil || c.pNonce == nil {
		return nil, nil, bad
	}
	if c.pMAC == nil || c.ulMACLen > 16 {
		return nil, nil, bad
	}
	m := &mech.CCMMessageParams{DataLen: ck.ULong(c.ulDataLen), Nonce: nonce, NonceFixedBits: ck.ULong(c.ulNonceFixedBits),
		Generator: ck.ULong(c.nonceGenerator), MACLen: ck.ULong(c.ulMACLen)}
	if decrypt {
		if m.MAC, err = goBytes(unsafe.Pointer(c.pMAC), c.ulMACLen); err != nil {
			return nil, nil, bad
		}
	}
	return c, m, nil
}

// messageInit is C_MessageEncryptInit and C_MessageDecryptInit. Each
// message brings its own parameter; a CK_CCM_MESSAGE_PARAMS given to the
// init as well (some callers do) is not used.
func messageInit(fn string, kind tpmtoken.OpKind, hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE,
	init func(l *tpmtoken.Library, h uint64, m mech.Mechanism, key uint64) error) C.CK_RV {
	return call(fn, func(l *tpmtoken.Library) error {
		if pMechanism == nil { // ends the active operation (PKCS#11 3.x)
			return l.CancelOp(uint64(hSession), kind)
		}
		mm := *pMechanism
		if uintptr(mm.ulParameterLen) == unsafe.Sizeof(C.CK_CCM_MESSAGE_PARAMS{}) {
			mm.pParameter, mm.ulParameterLen = nil, 0
		}
		m, err := mechanism(&mm)
		if err != nil {
			return err
		}
		return init(l, uint64(hSession), m, uint64(hKey))
	})
}

//export tpm11go_C_MessageEncryptInit
func tpm11go_C_MessageEncryptInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return messageInit("C_MessageEncryptInit", tpmtoken.OpMessageEncrypt, hSession, pMechanism, hKey, (*tpmtoken.Library).MessageEncryptInit)
}

//export tpm11go_C_MessageDecryptInit
func tpm11go_C_MessageDecryptInit(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hKey C.CK_OBJECT_HANDLE) C.CK_RV {
	return messageInit("C_MessageDecryptInit", tpmtoken.OpMessageDecrypt, hSession, pMechanism, hKey, (*tpmtoken.Library).MessageDecryptInit)
}

// cryptMessage is C_EncryptMessage and C_DecryptMessage.
func cryptMessage(fn string, decrypt bool, hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG,
	pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG, pIn C.CK_BYTE_PTR, ulInLen C.CK_ULONG,
	pOut C.CK_BYTE_PTR, pulOutLen C.CK_ULONG_PTR) C.CK_RV {
	kind, run := tpmtoken.OpMessageEncrypt, (*tpmtoken.Library).EncryptMessage
	if decrypt {
		kind, run = tpmtoken.OpMessageDecrypt, (*tpmtoken.Library).DecryptMessage
	}
	return call(fn, func(l *tpmtoken.Library) error {
		cp, p, aad, err := messageStart(pParameter, ulParameterLen, decrypt, pAssociatedData, ulAssociatedDataLen)
		if err != nil {
			return err
		}
		in, err := goBytes(unsafe.Pointer(pIn), ulInLen)
		if err != nil {
			return err
		}
		return output(l, hSession, kind, tpmtoken.Single, len(in), pOut, pulOutLen, func(dst tpmtoken.Dest) ([]byte, error) {
			out, err := run(l, uint64(hSession), p, aad, in, dst)
			if err == nil && !decrypt {
				// The nonce used and the MAC, into the caller's structure
				// (their lengths are the caller's own: checked above).
				copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pNonce)), int(cp.ulNonceLen)), p.Nonce)
				copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pMAC)), int(cp.ulMACLen)), p.MAC)
			}
			return out, err
		})
	})
}

//export tpm11go_C_EncryptMessage
func tpm11go_C_EncryptMessage(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG, pPlaintext C.CK_BYTE_PTR, ulPlaintextLen C.CK_ULONG, pCiphertext C.CK_BYTE_PTR, pulCiphertextLen C.CK_ULONG_PTR) C.CK_RV {
	return cryptMessage("C_EncryptMessage", false, hSession, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen, pPlaintext, ulPlaintextLen, pCiphertext, pulCiphertextLen)
}

//export tpm11go_C_DecryptMessage
func tpm11go_C_DecryptMessage(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG, pCiphertext C.CK_BYTE_PTR, ulCiphertextLen C.CK_ULONG, pPlaintext C.CK_BYTE_PTR, pulPlaintextLen C.CK_ULONG_PTR) C.CK_RV {
	return cryptMessage("C_DecryptMessage", true, hSession, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen, pCiphertext, ulCiphertextLen, pPlaintext, pulPlaintextLen)
}

// messageBegin is C_EncryptMessageBegin and C_DecryptMessageBegin.
func messageBegin(fn string, decrypt bool, hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG,
	pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG) C.CK_RV {
	return call(fn, func(l *tpmtoken.Library) error {
		cp, p, aad, err := messageStart(pParameter, ulParameterLen, decrypt, pAssociatedData, ulAssociatedDataLen)
		if err != nil {
			return err
		}
		if err := l.CipherMessageBegin(uint64(hSession), decrypt, p, aad); err != nil {
			return err
		}
		if !decrypt { // the nonce the message will use
			copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pNonce)), int(cp.ulNonceLen)), p.Nonce)
		}
		return nil
	})
}

// messageStart reads what a message's start carries, in C_EncryptMessage,
// C_DecryptMessage and their Begin: the CCM message parameters and the
// associated data.
func messageStart(pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, decrypt bool,
	pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG) (*C.CK_CCM_MESSAGE_PARAMS, *mech.CCMMessageParams, []byte, error) {
	cp, p, err := ccmMessageParam(pParameter, ulParameterLen, decrypt)
	if err != nil {
		return nil, nil, nil, err
	}
	aad, err := goBytes(unsafe.Pointer(pAssociatedData), ulAssociatedDataLen)
	if err != nil {
		return nil, nil, nil, err
	}
	return cp, p, aad, nil
}

// messageNext is C_EncryptMessageNext and C_DecryptMessageNext: with
// CKF_END_OF_MESSAGE the last part, which returns the whole output (and,
// encrypting, the MAC into pMAC).
func messageNext(fn string, decrypt bool, hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG,
	pIn C.CK_BYTE_PTR, ulInLen C.CK_ULONG, pOut C.CK_BYTE_PTR, pulOutLen C.CK_ULONG_PTR, flags C.CK_FLAGS) C.CK_RV {
	kind := tpmtoken.OpMessageEncrypt
	if decrypt {
		kind = tpmtoken.OpMessageDecrypt
	}
	return call(fn, func(l *tpmtoken.Library) error {
		cp, p, err := ccmMessageParam(pParameter, ulParameterLen, decrypt)
		if err != nil {
			return err
		}
		in, err := goBytes(unsafe.Pointer(pIn), ulInLen)
		if err != nil {
			return err
		}
		last := ck.Flags(flags)&ck.CKF_END_OF_MESSAGE != 0
		part := tpmtoken.Update
		if last {
			part = tpmtoken.Final
		}
		return output(l, hSession, kind, part, len(in), pOut, pulOutLen, func(dst tpmtoken.Dest) ([]byte, error) {
			out, err := l.CipherMessageNext(uint64(hSession), decrypt, p, in, last, dst)
			if err == nil && last && !decrypt {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pMAC)), int(cp.ulMACLen)), p.MAC)
			}
			return out, err
		})
	})
}

//export tpm11go_C_EncryptMessageBegin
func tpm11go_C_EncryptMessageBegin(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG) C.CK_RV {
	return messageBegin("C_EncryptMessageBegin", false, hSession, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen)
}

//export tpm11go_C_DecryptMessageBegin
func tpm11go_C_DecryptMessageBegin(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG) C.CK_RV {
	return messageBegin("C_DecryptMessageBegin", true, hSession, pParameter, ulParameterLen, pAssociatedData, ulAssociatedDataLen)
}

//export tpm11go_C_EncryptMessageNext
func tpm11go_C_EncryptMessageNext(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pPlaintextPart C.CK_BYTE_PTR, ulPlaintextPartLen C.CK_ULONG, pCiphertextPart C.CK_BYTE_PTR, pulCiphertextPartLen C.CK_ULONG_PTR, flags C.CK_FLAGS) C.CK_RV {
	return messageNext("C_EncryptMessageNext", false, hSession, pParameter, ulParameterLen, pPlaintextPart, ulPlaintextPartLen, pCiphertextPart, pulCiphertextPartLen, flags)
}

//export tpm11go_C_DecryptMessageNext
func tpm11go_C_DecryptMessageNext(hSession C.CK_SESSION_HANDLE, pParameter C.CK_VOID_PTR, ulParameterLen C.CK_ULONG, pCiphertextPart C.CK_BYTE_PTR, ulCiphertextPartLen C.CK_ULONG, pPlaintextPart C.CK_BYTE_PTR, pulPlaintextPartLen C.CK_ULONG_PTR, flags C.CK_FLAGS) C.CK_RV {
	return messageNext("C_DecryptMessageNext", true, hSession, pParameter, ulParameterLen, pCiphertextPart, ulCiphertextPartLen, pPlaintextPart, pulPlaintextPartLen, flags)
}

//export tpm11go_C_MessageEncryptFinal
func tpm11go_C_MessageEncryptFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_MessageEncryptFinal", func(l *tpmtoken.Library) error {
		return l.MessageCipherFinal(uint64(hSession), false)
	})
}

//export tpm11go_C_MessageDecryptFinal
func tpm11go_C_MessageDecryptFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_MessageDecryptFinal", func(l *tpmtoken.Library) error {
		return l.MessageCipherFinal(uint64(hSession), true)
	})
}
