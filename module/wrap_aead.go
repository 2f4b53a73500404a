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

// C_WrapKeyAuthenticated and C_UnwrapKeyAuthenticated (3.2): the
// mechanism (CKM_AES_CCM) carries the message parameter,
// CK_CCM_MESSAGE_PARAMS; a wrap writes the nonce it used into pNonce and
// the MAC into pMAC (tpmtoken/wrap_authenticated.go).

// authWrapMechanism decodes pMechanism with its CK_CCM_MESSAGE_PARAMS.
func authWrapMechanism(p C.CK_MECHANISM_PTR, unwrap bool) (*C.CK_CCM_MESSAGE_PARAMS, tpmtoken.Mechanism, error) {
	if p == nil {
		return nil, tpmtoken.Mechanism{}, errArgs
	}
	mm := *p
	mm.pParameter, mm.ulParameterLen = nil, 0
	m, err := mechanism(&mm)
	if err != nil {
		return nil, m, err
	}
	if m.Type != ck.CKM_AES_CCM {
		return nil, m, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	cp, param, err := ccmMessageParam(p.pParameter, p.ulParameterLen, unwrap)
	if err != nil {
		return nil, m, err
	}
	m.Param = param
	return cp, m, nil
}

//export tpm11go_C_WrapKeyAuthenticated
func tpm11go_C_WrapKeyAuthenticated(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hWrappingKey C.CK_OBJECT_HANDLE, hKey C.CK_OBJECT_HANDLE, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG, pWrappedKey C.CK_BYTE_PTR, pulWrappedKeyLen C.CK_ULONG_PTR) C.CK_RV {
	return call("C_WrapKeyAuthenticated", func(l *tpmtoken.Library) error {
		cp, m, err := authWrapMechanism(pMechanism, false)
		if err != nil {
			return err
		}
		aad, err := goBytes(unsafe.Pointer(pAssociatedData), ulAssociatedDataLen)
		if err != nil || pulWrappedKeyLen == nil {
			return errArgs
		}
		h, wk, k := uint64(hSession), uint64(hWrappingKey), uint64(hKey)
		n, err := l.WrapKeyAuthenticatedLen(h, m, wk, k)
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
		out, err := l.WrapKeyAuthenticated(h, m, wk, k, aad)
		if err != nil {
			return err
		}
		// The nonce used and the MAC, into the caller's structure (their
		// lengths are the caller's own: checked by ccmMessageParam).
		p := m.Param.(*mech.CCMMessageParams)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pNonce)), int(cp.ulNonceLen)), p.Nonce)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(cp.pMAC)), int(cp.ulMACLen)), p.MAC)
		return fill(pWrappedKey, pulWrappedKeyLen, out)
	})
}

//export tpm11go_C_UnwrapKeyAuthenticated
func tpm11go_C_UnwrapKeyAuthenticated(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hUnwrappingKey C.CK_OBJECT_HANDLE, pWrappedKey C.CK_BYTE_PTR, ulWrappedKeyLen C.CK_ULONG, pTemplate C.CK_ATTRIBUTE_PTR, ulAttributeCount C.CK_ULONG, pAssociatedData C.CK_BYTE_PTR, ulAssociatedDataLen C.CK_ULONG, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_UnwrapKeyAuthenticated", func(l *tpmtoken.Library) error {
		_, m, err := authWrapMechanism(pMechanism, true)
		if err != nil {
			return err
		}
		wrapped, err := goBytes(unsafe.Pointer(pWrappedKey), ulWrappedKeyLen)
		if err != nil || phKey == nil {
			return errArgs
		}
		aad, err := goBytes(unsafe.Pointer(pAssociatedData), ulAssociatedDataLen)
		if err != nil {
			return err
		}
		t, err := template(pTemplate, ulAttributeCount)
		if err != nil {
			return err
		}
		k, err := l.UnwrapKeyAuthenticated(uint64(hSession), m, uint64(hUnwrappingKey), wrapped, t, aad)
		if err != nil {
			return err
		}
		*phKey = C.CK_OBJECT_HANDLE(k)
		return nil
	})
}
