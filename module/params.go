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

// mechanism decodes a CK_MECHANISM and its parameter structure into typed
// Go values: no C layout is read below this package. mech says which
// structure a mechanism takes; a wrong size is CKR_MECHANISM_PARAM_INVALID.
func mechanism(p C.CK_MECHANISM_PTR) (mech.Mechanism, error) {
	if p == nil {
		return mech.Mechanism{}, errArgs
	}
	m := mech.Mechanism{Type: ck.MechType(p.mechanism)}
	// Built only on failure: C_SignInit runs this for every signature.
	bad := func() error { return ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "parameter of mechanism 0x%x", m.Type) }
	if p.pParameter == nil && p.ulParameterLen != 0 {
		return m, bad()
	}
	if p.pParameter == nil {
		return m, nil
	}
	var err error
	switch kind := mech.ParamKindOf(m.Type); kind {
	case mech.ParamOAEP:
		var o *C.CK_RSA_PKCS_OAEP_PARAMS
		if o, err = param[C.CK_RSA_PKCS_OAEP_PARAMS](p); err == nil {
			var label []byte
			if label, err = goBytes(unsafe.Pointer(o.pSourceData), o.ulSourceDataLen); err == nil {
				m.Param = mech.OAEPParams{HashAlg: ck.MechType(o.hashAlg), MGF: ck.MGF(o.mgf), Source: ck.ULong(o.source), Label: label}
			}
		}
	case mech.ParamPSS:
		var s *C.CK_RSA_PKCS_PSS_PARAMS
		if s, err = param[C.CK_RSA_PKCS_PSS_PARAMS](p); err == nil {
			m.Param = mech.PSSParams{HashAlg: ck.MechType(s.hashAlg), MGF: ck.MGF(s.mgf), SaltLen: ck.ULong(s.sLen)}
		}
	case mech.ParamECDH1:
		var e *C.CK_ECDH1_DERIVE_PARAMS
		if e, err = param[C.CK_ECDH1_DERIVE_PARAMS](p); err == nil {
			shared, err1 := goBytes(unsafe.Pointer(e.pSharedData), e.ulSharedDataLen)
			public, err2 := goBytes(unsafe.Pointer(e.pPublicData), e.ulPublicDataLen)
			if err = err1; err == nil {
				err = err2
			}
			m.Param = mech.ECDH1Params{KDF: ck.KDF(e.kdf), SharedData: shared, PublicData: public}
		}
	case mech.ParamCTR:
		var c *C.CK_AES_CTR_PARAMS
		if c, err = param[C.CK_AES_CTR_PARAMS](p); err == nil {
			ctr := mech.CTRParams{CounterBits: ck.ULong(c.ulCounterBits)}
			copy(ctr.Block[:], unsafe.Slice((*byte)(unsafe.Pointer(&c.cb[0])), 16))
			m.Param = ctr
		}
	case mech.ParamCCM:
		var c *C.CK_CCM_PARAMS
		if c, err = param[C.CK_CCM_PARAMS](p); err == nil {
			nonce, err1 := goBytes(unsafe.Pointer(c.pNonce), c.ulNonceLen)
			aad, err2 := goBytes(unsafe.Pointer(c.pAAD), c.ulAADLen)
			if err = err1; err == nil {
				err = err2
			}
			m.Param = mech.CCMParams{DataLen: ck.ULong(c.ulDataLen), Nonce: nonce, AAD: aad, MACLen: ck.ULong(c.ulMACLen)}
		}
	case mech.ParamSignContext:
		var c *C.CK_SIGN_ADDITIONAL_CONTEXT
		if c, err = param[C.CK_SIGN_ADDITIONAL_CONTEXT](p); err == nil {
			var ctx []byte
			if ctx, err = goBytes(unsafe.Pointer(c.pContext), c.ulContextLen); err == nil {
				m.Param = mech.SignContext{Hedge: ck.ULong(c.hedgeVariant), Context: ctx}
			}
		}
	case mech.ParamHashSignContext:
		var c *C.CK_HASH_SIGN_ADDITIONAL_CONTEXT
		if c, err = param[C.CK_HASH_SIGN_ADDITIONAL_CONTEXT](p); err == nil {
			var ctx []byte
			if ctx, err = goBytes(unsafe.Pointer(c.pContext), c.ulContextLen); err == nil {
				m.Param = mech.HashSignContext{Hedge: ck.ULong(c.hedgeVariant), Context: ctx, Hash: ck.MechType(c.hash)}
			}
		}
	default:
		var b []byte
		if b, err = goBytes(unsafe.Pointer(p.pParameter), p.ulParameterLen); err == nil {
			m.Param = mech.Bytes(b)
		}
	}
	if err != nil {
		return m, bad()
	}
	return m, nil
}

// param returns the mechanism's parameter as a *T if it is exactly T's size.
func param[T any](p C.CK_MECHANISM_PTR) (*T, error) {
	var zero T
	if uintptr(p.ulParameterLen) != unsafe.Sizeof(zero) {
		return nil, errArgs
	}
	return (*T)(p.pParameter), nil
}

// keyInit is every C_*Init that takes a mechanism and a key: decode the
// mechanism, then start the operation of kind; a NULL mechanism ends it
// instead (PKCS#11 3.x).
func keyInit(fn string, kind tpmtoken.OpKind, h C.CK_SESSION_HANDLE, pMechanism C.CK_MECHANISM_PTR, key C.CK_OBJECT_HANDLE,
	init func(l *tpmtoken.Library, h uint64, m mech.Mechanism, key uint64) error) C.CK_RV {
	return call(fn, func(l *tpmtoken.Library) error {
		if pMechanism == nil {
			return l.CancelOp(uint64(h), kind)
		}
		m, err := mechanism(pMechanism)
		if err != nil {
			return err
		}
		return init(l, uint64(h), m, uint64(key))
	})
}
