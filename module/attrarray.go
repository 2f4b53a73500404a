package main

/*
#include "ck.h"
*/
import "C"

import (
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Template attributes (CKA_WRAP_TEMPLATE, ...: ck.IsTemplate) at the C
// boundary. Their pValue is a CK_ATTRIBUTE array and ulValueLen its size
// in bytes. Given in a template, the array is deep-copied into the token's
// encoding (key_objects.md: never kept as received); read by
// C_GetAttributeValue, it is filled by key_objects.md's rules.

const attrSize = C.CK_ULONG(unsafe.Sizeof(C.CK_ATTRIBUTE{}))

// maxInnerValue bounds one attribute's value inside a template: no
// attribute a key template names is larger (a DER EC point, an RSA modulus).
const maxInnerValue = 1 << 16

// arrayValue reads the CK_ATTRIBUTE array of template attribute a, with
// strict bounds: a length that is not a whole number of CK_ATTRIBUTEs, a
// NULL array or value with a length, too many attributes or too long a
// value is CKR_ATTRIBUTE_VALUE_INVALID; a template in the template is
// CKR_TEMPLATE_INCONSISTENT (the token denies recursion), as is one whose
// pointers may be another process's (inBytesRPC).
func arrayValue(a C.CK_ATTRIBUTE) ([]byte, error) {
	typ := ck.AttributeType(a._type)
	bad := func(why string) error {
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x: %s", typ, why)
	}
	if typ&ck.CKF_ARRAY_ATTRIBUTE == 0 && inBytesRPC() {
		return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x: p11-kit's RPC carries it as bytes, its pointers the client's", typ)
	}
	if a.ulValueLen%attrSize != 0 {
		return nil, bad("not an array of CK_ATTRIBUTE")
	}
	n := a.ulValueLen / attrSize
	switch {
	case n == 0:
		return tpmtoken.EncodeTemplate(nil), nil
	case a.pValue == nil:
		return nil, bad("NULL array")
	case n > store.MaxTemplateAttrs:
		return nil, bad("too many attributes")
	}
	inner := unsafe.Slice((*C.CK_ATTRIBUTE)(a.pValue), int(n))
	as := make([]tpmtoken.Attr, 0, n)
	for _, e := range inner {
		t := ck.AttributeType(e._type)
		if ck.IsTemplate(t) {
			return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x: a template in a template", typ)
		}
		if e.ulValueLen > maxInnerValue || (e.pValue == nil && e.ulValueLen != 0) {
			return nil, bad("an attribute's value")
		}
		v, err := goBytes(unsafe.Pointer(e.pValue), e.ulValueLen)
		if err != nil {
			return nil, bad("an attribute's value")
		}
		as = append(as, tpmtoken.Attr{Type: t, Value: v})
	}
	return tpmtoken.EncodeTemplate(as), nil
}

// putArray answers C_GetAttributeValue for template attribute a whose
// value is v (key_objects.md "Template Attributes"): with pValue NULL, the
// array's size; an array too small for all the attributes, its length
// CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL. Otherwise the
// caller's inner attributes are all CK_UNAVAILABLE_INFORMATION (each gets
// a type and length, in order, pValue untouched), or each names an
// attribute of the template, in any order, and is answered as
// C_GetAttributeValue answers a top-level one (pValue NULL: the length;
// too small: CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL); a
// mixture, or a type the template lacks, is CKR_TEMPLATE_INCONSISTENT.
func putArray(a *C.CK_ATTRIBUTE, v []byte) ck.RV {
	// In p11-kit's RPC server a type without CKF_ARRAY_ATTRIBUTE
	// (ENCAPSULATE/DECAPSULATE_TEMPLATE in the 3.2 header) arrives as a
	// byte buffer, not the caller's CK_ATTRIBUTEs: nothing to fill there
	// (arrayValue refuses them the same way on input).
	if ck.AttributeType(a._type)&ck.CKF_ARRAY_ATTRIBUTE == 0 && inBytesRPC() {
		a.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
		return ck.CKR_ATTRIBUTE_TYPE_INVALID
	}
	as, err := tpmtoken.DecodeTemplate(v)
	if err != nil {
		a.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
		return ck.CKR_GENERAL_ERROR
	}
	size := C.CK_ULONG(len(as)) * attrSize
	switch {
	case a.pValue == nil:
		a.ulValueLen = size
		return ck.CKR_OK
	case a.ulValueLen < size:
		a.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
		return ck.CKR_BUFFER_TOO_SMALL
	}
	inner := unsafe.Slice((*C.CK_ATTRIBUTE)(a.pValue), len(as))
	unknown := 0
	for _, e := range inner {
		if ck.ULong(e._type) == ck.UnavailableInformation {
			unknown++
		}
	}
	switch unknown {
	case len(inner):
		for i := range inner {
			inner[i]._type = C.CK_ATTRIBUTE_TYPE(as[i].Type)
			inner[i].ulValueLen = C.CK_ULONG(len(as[i].Value))
		}
		a.ulValueLen = size
		return ck.CKR_OK
	case 0:
	default:
		return ck.CKR_TEMPLATE_INCONSISTENT
	}
	// Every type must be the template's before anything is written.
	values := make([][]byte, len(inner))
	for i, e := range inner {
		found := false
		for _, t := range as {
			if ck.AttributeType(e._type) == t.Type {
				values[i], found = t.Value, true
				break
			}
		}
		if !found {
			return ck.CKR_TEMPLATE_INCONSISTENT
		}
	}
	rv := ck.CKR_OK
	for i := range inner {
		e, val := &inner[i], values[i]
		switch {
		case e.pValue == nil:
			e.ulValueLen = C.CK_ULONG(len(val))
		case int(e.ulValueLen) < len(val):
			e.ulValueLen = C.CK_ULONG(ck.UnavailableInformation)
			rv = ck.CKR_BUFFER_TOO_SMALL
		default:
			copy(unsafe.Slice((*byte)(e.pValue), len(val)), val)
			e.ulValueLen = C.CK_ULONG(len(val))
		}
	}
	a.ulValueLen = size
	return rv
}

// inBytesRPC says whether this process is p11-kit's RPC server (p11-kit
// remote: a forked child's helper, docs/fork.md; p11-kit server). Its
// client carries an attribute it does not know as bytes, and p11-kit
// knows CKA_ENCAPSULATE_TEMPLATE and CKA_DECAPSULATE_TEMPLATE neither as
// arrays (the 3.2 header defines them without CKF_ARRAY_ATTRIBUTE): their
// "array" here would be the remote caller's bytes, its pointers any
// address in this process. Those two are refused there; the three with
// the bit are decoded by p11-kit into arrays of this process.
var inBytesRPC = sync.OnceValue(func() bool {
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	switch filepath.Base(exe) {
	case "p11-kit", "p11-kit-remote", "p11-kit-server":
		return true
	}
	return false
})
