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

//export tpm11go_C_FindObjectsInit
func tpm11go_C_FindObjectsInit(hSession C.CK_SESSION_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) C.CK_RV {
	return call("C_FindObjectsInit", func(l *tpmtoken.Library) error {
		t, err := template(pTemplate, ulCount)
		if ck.ToRV(err) == ck.CKR_TEMPLATE_INCONSISTENT {
			// A template in a template: C_FindObjectsInit has no
			// CKR_TEMPLATE_INCONSISTENT (a forked child answers the same).
			return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
		}
		if err != nil {
			return err
		}
		return l.FindObjectsInit(uint64(hSession), t)
	})
}

//export tpm11go_C_FindObjects
func tpm11go_C_FindObjects(hSession C.CK_SESSION_HANDLE, phObject C.CK_OBJECT_HANDLE_PTR, ulMaxObjectCount C.CK_ULONG, pulObjectCount C.CK_ULONG_PTR) C.CK_RV {
	return call("C_FindObjects", func(l *tpmtoken.Library) error {
		if pulObjectCount == nil || (phObject == nil && ulMaxObjectCount > 0) {
			return errArgs
		}
		hs, err := l.FindObjects(uint64(hSession), int(min(ulMaxObjectCount, 1<<20)))
		if err != nil {
			return err
		}
		dst := unsafe.Slice((*C.CK_OBJECT_HANDLE)(phObject), len(hs))
		for i, h := range hs {
			dst[i] = C.CK_OBJECT_HANDLE(h)
		}
		*pulObjectCount = C.CK_ULONG(len(hs))
		return nil
	})
}

//export tpm11go_C_FindObjectsFinal
func tpm11go_C_FindObjectsFinal(hSession C.CK_SESSION_HANDLE) C.CK_RV {
	return call("C_FindObjectsFinal", func(l *tpmtoken.Library) error { return l.FindObjectsFinal(uint64(hSession)) })
}

//export tpm11go_C_GetAttributeValue
func tpm11go_C_GetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) C.CK_RV {
	return call("C_GetAttributeValue", func(l *tpmtoken.Library) error {
		if pTemplate == nil || ulCount > 1<<16 {
			return errArgs
		}
		attrs := unsafe.Slice(pTemplate, int(ulCount))
		types := make([]ck.AttributeType, len(attrs))
		for i, a := range attrs {
			types[i] = ck.AttributeType(a._type)
		}
		res, err := l.GetAttributeValue(uint64(hSession), uint64(hObject), types)
		if err != nil {
			return err
		}
		// Every attribute is processed; the last problem found is returned,
		// as the spec allows any of them.
		var worst ck.RV
		for i := range attrs {
			a, r := &attrs[i], res[i]
			switch {
			case r.RV != ck.CKR_OK:
				a.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
				worst = r.RV
			case ck.IsTemplate(types[i]):
				if rv := putArray(a, r.Value); rv != ck.CKR_OK {
					worst = rv
				}
			case a.pValue == nil:
				a.ulValueLen = C.CK_ULONG(len(r.Value))
			case int(a.ulValueLen) < len(r.Value):
				a.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
				worst = ck.CKR_BUFFER_TOO_SMALL
			default:
				copy(unsafe.Slice((*byte)(a.pValue), len(r.Value)), r.Value)
				a.ulValueLen = C.CK_ULONG(len(r.Value))
			}
		}
		if worst != ck.CKR_OK {
			return ck.E(worst)
		}
		return nil
	})
}

//export tpm11go_C_DestroyObject
func tpm11go_C_DestroyObject(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE) C.CK_RV {
	return call("C_DestroyObject", func(l *tpmtoken.Library) error {
		return l.DestroyObject(uint64(hSession), uint64(hObject))
	})
}

//export tpm11go_C_GenerateKeyPair
func tpm11go_C_GenerateKeyPair(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, pPublicKeyTemplate C.CK_ATTRIBUTE_PTR, ulPublicKeyAttributeCount C.CK_ULONG, pPrivateKeyTemplate C.CK_ATTRIBUTE_PTR, ulPrivateKeyAttributeCount C.CK_ULONG, phPublicKey C.CK_OBJECT_HANDLE_PTR, phPrivateKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_GenerateKeyPair", func(l *tpmtoken.Library) error {
		if phPublicKey == nil || phPrivateKey == nil {
			return errArgs
		}
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		pub, err := template(pPublicKeyTemplate, ulPublicKeyAttributeCount)
		if err != nil {
			return err
		}
		priv, err := template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount)
		if err != nil {
			return err
		}
		hPub, hPriv, err := l.GenerateKeyPair(uint64(hSession), m, pub, priv)
		if err != nil {
			return err
		}
		*phPublicKey, *phPrivateKey = C.CK_OBJECT_HANDLE(hPub), C.CK_OBJECT_HANDLE(hPriv)
		return nil
	})
}

//export tpm11go_C_GenerateKey
func tpm11go_C_GenerateKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_GenerateKey", func(l *tpmtoken.Library) error {
		return newKey(phKey, pMechanism, pTemplate, ulCount, func(m tpmtoken.Mechanism, t []tpmtoken.Attr) (uint64, error) {
			return l.GenerateKey(uint64(hSession), m, t)
		})
	})
}

//export tpm11go_C_DeriveKey
func tpm11go_C_DeriveKey(hSession C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, hBaseKey C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulAttributeCount C.CK_ULONG, phKey C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_DeriveKey", func(l *tpmtoken.Library) error {
		return newKey(phKey, pMechanism, pTemplate, ulAttributeCount, func(m tpmtoken.Mechanism, t []tpmtoken.Attr) (uint64, error) {
			return l.DeriveKey(uint64(hSession), m, uint64(hBaseKey), t)
		})
	})
}

// newKey decodes what C_GenerateKey and C_DeriveKey share and stores the
// new key's handle.
func newKey(ph C.CK_OBJECT_HANDLE_PTR, pm C.CK_MECHANISM_PTR, pt C.CK_ATTRIBUTE_PTR, n C.CK_ULONG, f func(tpmtoken.Mechanism, []tpmtoken.Attr) (uint64, error)) error {
	if ph == nil {
		return errArgs
	}
	m, err := mechanism(pm)
	if err != nil {
		return err
	}
	t, err := template(pt, n)
	if err != nil {
		return err
	}
	h, err := f(m, t)
	if err != nil {
		return err
	}
	*ph = C.CK_OBJECT_HANDLE(h)
	return nil
}

//export tpm11go_C_CreateObject
func tpm11go_C_CreateObject(hSession C.CK_SESSION_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG, phObject C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_CreateObject", func(l *tpmtoken.Library) error {
		if phObject == nil || pTemplate == nil {
			return errArgs
		}
		t, err := template(pTemplate, ulCount)
		if err != nil {
			return err
		}
		h, err := l.CreateObject(uint64(hSession), t)
		if err != nil {
			return err
		}
		*phObject = C.CK_OBJECT_HANDLE(h)
		return nil
	})
}

//export tpm11go_C_SetAttributeValue
func tpm11go_C_SetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG) C.CK_RV {
	return call("C_SetAttributeValue", func(l *tpmtoken.Library) error {
		if pTemplate == nil && ulCount > 0 {
			return errArgs
		}
		t, err := template(pTemplate, ulCount)
		if err != nil {
			return err
		}
		return l.SetAttributeValue(uint64(hSession), uint64(hObject), t)
	})
}

//export tpm11go_C_CopyObject
func tpm11go_C_CopyObject(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate C.CK_ATTRIBUTE_PTR, ulCount C.CK_ULONG, phNewObject C.CK_OBJECT_HANDLE_PTR) C.CK_RV {
	return call("C_CopyObject", func(l *tpmtoken.Library) error {
		if phNewObject == nil || (pTemplate == nil && ulCount > 0) {
			return errArgs
		}
		t, err := template(pTemplate, ulCount)
		if err != nil {
			return err
		}
		h, err := l.CopyObject(uint64(hSession), uint64(hObject), t)
		if err != nil {
			return err
		}
		*phNewObject = C.CK_OBJECT_HANDLE(h)
		return nil
	})
}

//export tpm11go_C_GetObjectSize
func tpm11go_C_GetObjectSize(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pulSize C.CK_ULONG_PTR) C.CK_RV {
	return call("C_GetObjectSize", func(l *tpmtoken.Library) error {
		if pulSize == nil {
			return errArgs
		}
		n, err := l.ObjectSize(uint64(hSession), uint64(hObject))
		if err != nil {
			return err
		}
		*pulSize = C.CK_ULONG(n)
		return nil
	})
}
