package main

/*
#include "ck.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// Key encapsulation (3.2): C_EncapsulateKey's ciphertext follows §5.2's
// output convention; the token checks the capacity before making anything.

//export tpm11go_C_EncapsulateKey
func tpm11go_C_EncapsulateKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hPublicKey C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulAttributeCount C.CK_ULONG, pCiphertext C.CK_BYTE_PTR, pulCiphertextLen C.CK_ULONG_PTR, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_EncapsulateKey", func(l *tpmtoken.Library) error {
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		if pulCiphertextLen == nil {
			return errArgs
		}
		h, pub := uint64(hSession), uint64(hPublicKey)
		if pCiphertext == nil {
			n, err := l.EncapsulateKeyLen(h, m, pub)
			if err != nil {
				return err
			}
			*pulCiphertextLen = C.CK_ULONG(n)
			return nil
		}
		if phKey == nil {
			return errArgs
		}
		t, err := template(pTemplate, ulAttributeCount)
		if err != nil {
			return err
		}
		capacity := bufLen(*pulCiphertextLen)
		ct, key, err := l.EncapsulateKey(h, m, pub, t, tpmtoken.Dest{Cap: capacity})
		var ce *ck.Error
		if errors.As(err, &ce) && ce.RV == ck.CKR_BUFFER_TOO_SMALL {
			*pulCiphertextLen = C.CK_ULONG(ce.Needed)
			return err
		}
		if err != nil {
			return err
		}
		if len(ct) > capacity { // never: the token checked it; never write past the buffer
			return ck.Errorf(ck.CKR_GENERAL_ERROR, "%d bytes of ciphertext for a %d-byte buffer", len(ct), capacity)
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(pCiphertext)), len(ct)), ct)
		*pulCiphertextLen = C.CK_ULONG(len(ct))
		*phKey = C.CK_OBJECT_HANDLE(key)
		return nil
	})
}

//export tpm11go_C_DecapsulateKey
func tpm11go_C_DecapsulateKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hPrivateKey C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulAttributeCount C.CK_ULONG, pCiphertext C.CK_BYTE_PTR, ulCiphertextLen C.CK_ULONG, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_DecapsulateKey", func(l *tpmtoken.Library) error {
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		ct, err := goBytes(unsafe.Pointer(pCiphertext), ulCiphertextLen)
		if err != nil || phKey == nil || len(ct) == 0 {
			return errArgs
		}
		t, err := template(pTemplate, ulAttributeCount)
		if err != nil {
			return err
		}
		key, err := l.DecapsulateKey(uint64(hSession), m, uint64(hPrivateKey), t, ct)
		if err != nil {
			return err
		}
		*phKey = C.CK_OBJECT_HANDLE(key)
		return nil
	})
}
