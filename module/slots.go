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

// ulongs writes a list with the length convention of section 5.2.
func ulongs[T ~uint64](p *C.CK_ULONG, pulCount C.CK_ULONG_PTR, vals []T) error {
	if pulCount == nil {
		return errArgs
	}
	if p == nil {
		*pulCount = C.CK_ULONG(len(vals))
		return nil
	}
	if bufLen(*pulCount) < len(vals) {
		*pulCount = C.CK_ULONG(len(vals))
		return ck.TooSmall(len(vals))
	}
	dst := unsafe.Slice(p, len(vals))
	for i, v := range vals {
		dst[i] = C.CK_ULONG(v)
	}
	*pulCount = C.CK_ULONG(len(vals))
	return nil
}

//export tpm11go_C_GetSlotList
func tpm11go_C_GetSlotList(tokenPresent C.CK_BBOOL, pSlotList C.CK_SLOT_ID_PTR, pulCount C.CK_ULONG_PTR) C.CK_RV {
	return call("C_GetSlotList", func(l *tpmtoken.Library) error {
		return ulongs((*C.CK_ULONG)(pSlotList), pulCount, l.SlotList(tokenPresent != 0))
	})
}

//export tpm11go_C_GetSlotInfo
func tpm11go_C_GetSlotInfo(slotID C.CK_SLOT_ID, pInfo C.CK_SLOT_INFO_PTR) C.CK_RV {
	return call("C_GetSlotInfo", func(l *tpmtoken.Library) error {
		if pInfo == nil {
			return errArgs
		}
		info, err := l.SlotInfo(uint64(slotID))
		if err != nil {
			return err
		}
		padded(unsafe.Pointer(&pInfo.slotDescription), 64, info.Description)
		padded(unsafe.Pointer(&pInfo.manufacturerID), 32, info.Manufacturer)
		pInfo.flags = C.CK_FLAGS(info.Flags)
		pInfo.hardwareVersion = C.CK_VERSION{major: C.CK_BYTE(info.HW[0]), minor: C.CK_BYTE(info.HW[1])}
		pInfo.firmwareVersion = C.CK_VERSION{major: C.CK_BYTE(info.FW[0]), minor: C.CK_BYTE(info.FW[1])}
		return nil
	})
}

//export tpm11go_C_GetTokenInfo
func tpm11go_C_GetTokenInfo(slotID C.CK_SLOT_ID, pInfo C.CK_TOKEN_INFO_PTR) C.CK_RV {
	return call("C_GetTokenInfo", func(l *tpmtoken.Library) error {
		if pInfo == nil {
			return errArgs
		}
		info, err := l.TokenInfo(uint64(slotID))
		if err != nil {
			return err
		}
		padded(unsafe.Pointer(&pInfo.label), 32, info.Label)
		padded(unsafe.Pointer(&pInfo.manufacturerID), 32, info.Manufacturer)
		padded(unsafe.Pointer(&pInfo.model), 16, info.Model)
		padded(unsafe.Pointer(&pInfo.serialNumber), 16, info.Serial)
		padded(unsafe.Pointer(&pInfo.utcTime), 16, "")
		pInfo.flags = C.CK_FLAGS(info.Flags)
		pInfo.ulMaxSessionCount = C.CK_ULONG(ck.EffectivelyInfinite)
		pInfo.ulSessionCount = C.CK_ULONG(info.Sessions)
		pInfo.ulMaxRwSessionCount = C.CK_ULONG(ck.EffectivelyInfinite)
		pInfo.ulRwSessionCount = C.CK_ULONG(info.RWSessions)
		pInfo.ulMaxPinLen = C.CK_ULONG(info.MaxPIN)
		pInfo.ulMinPinLen = C.CK_ULONG(info.MinPIN)
		for _, p := range []*C.CK_ULONG{&pInfo.ulTotalPublicMemory, &pInfo.ulFreePublicMemory, &pInfo.ulTotalPrivateMemory, &pInfo.ulFreePrivateMemory} {
			*p = C.CK_ULONG(ck.UnavailableInformation)
		}
		pInfo.hardwareVersion = C.CK_VERSION{major: C.CK_BYTE(info.HW[0]), minor: C.CK_BYTE(info.HW[1])}
		pInfo.firmwareVersion = C.CK_VERSION{major: C.CK_BYTE(info.FW[0]), minor: C.CK_BYTE(info.FW[1])}
		return nil
	})
}

//export tpm11go_C_GetMechanismList
func tpm11go_C_GetMechanismList(slotID C.CK_SLOT_ID, pMechanismList C.CK_MECHANISM_TYPE_PTR, pulCount C.CK_ULONG_PTR) C.CK_RV {
	return call("C_GetMechanismList", func(l *tpmtoken.Library) error {
		ms, err := l.MechanismList(uint64(slotID))
		if err != nil {
			return err
		}
		return ulongs((*C.CK_ULONG)(pMechanismList), pulCount, ms)
	})
}

//export tpm11go_C_GetMechanismInfo
func tpm11go_C_GetMechanismInfo(slotID C.CK_SLOT_ID, typ C.CK_MECHANISM_TYPE, pInfo C.CK_MECHANISM_INFO_PTR) C.CK_RV {
	return call("C_GetMechanismInfo", func(l *tpmtoken.Library) error {
		if pInfo == nil {
			return errArgs
		}
		info, err := l.MechanismInfo(uint64(slotID), ck.MechType(typ))
		if err != nil {
			return err
		}
		pInfo.ulMinKeySize, pInfo.ulMaxKeySize, pInfo.flags = C.CK_ULONG(info.Min), C.CK_ULONG(info.Max), C.CK_FLAGS(info.Flags)
		return nil
	})
}

//export tpm11go_C_InitToken
func tpm11go_C_InitToken(slotID C.CK_SLOT_ID, pPin C.CK_UTF8CHAR_PTR, ulPinLen C.CK_ULONG, pLabel C.CK_UTF8CHAR_PTR) C.CK_RV {
	return call("C_InitToken", func(l *tpmtoken.Library) error {
		pin, err := goBytes(unsafe.Pointer(pPin), ulPinLen)
		if err != nil || pLabel == nil {
			return errArgs
		}
		defer clear(pin) // no copy of a PIN outlives the call
		label, _ := goBytes(unsafe.Pointer(pLabel), 32)
		return l.InitToken(uint64(slotID), pin, label)
	})
}

//export tpm11go_C_InitPIN
func tpm11go_C_InitPIN(hSession C.CK_SESSION_HANDLE, pPin C.CK_UTF8CHAR_PTR, ulPinLen C.CK_ULONG) C.CK_RV {
	return call("C_InitPIN", func(l *tpmtoken.Library) error {
		pin, err := goBytes(unsafe.Pointer(pPin), ulPinLen)
		if err != nil {
			return err
		}
		defer clear(pin) // no copy of a PIN outlives the call
		return l.InitPIN(uint64(hSession), pin)
	})
}

//export tpm11go_C_SetPIN
func tpm11go_C_SetPIN(hSession C.CK_SESSION_HANDLE, pOldPin C.CK_UTF8CHAR_PTR, ulOldLen C.CK_ULONG, pNewPin C.CK_UTF8CHAR_PTR, ulNewLen C.CK_ULONG) C.CK_RV {
	return call("C_SetPIN", func(l *tpmtoken.Library) error {
		oldPIN, err := goBytes(unsafe.Pointer(pOldPin), ulOldLen)
		if err != nil {
			return err
		}
		defer clear(oldPIN) // no copy of a PIN outlives the call
		newPIN, err := goBytes(unsafe.Pointer(pNewPin), ulNewLen)
		if err != nil {
			return err
		}
		defer clear(newPIN)
		return l.SetPIN(uint64(hSession), oldPIN, newPIN)
	})
}
