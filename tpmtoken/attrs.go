package tpmtoken

import (
	"bytes"
	"encoding/binary"

	"github.com/tpm11/tpm11/ck"
)

// Attr is one template entry.
type Attr struct {
	Type  ck.AttributeType
	Value []byte
}

// Attrs are an object's attributes in their PKCS#11 encoding (CK_BBOOL one
// byte, CK_ULONG eight bytes in host order).
type Attrs map[ck.AttributeType][]byte

func boolBytes(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func ulongBytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, v)
	return b
}

func (a Attrs) Bool(t ck.AttributeType) bool {
	v := a[t]
	return len(v) == 1 && v[0] != 0
}

func (a Attrs) ULong(t ck.AttributeType) (uint64, bool) {
	v, ok := a[t]
	if !ok || len(v) != 8 {
		return 0, false
	}
	return binary.NativeEndian.Uint64(v), true
}

func (a Attrs) SetBool(t ck.AttributeType, b bool)    { a[t] = boolBytes(b) }
func (a Attrs) SetULong(t ck.AttributeType, v uint64) { a[t] = ulongBytes(v) }

// Template is a caller's template, indexed.
type Template map[ck.AttributeType][]byte

// NewTemplate indexes a caller's template. An attribute given twice with
// the same value is accepted; with two different values the template
// contradicts itself: CKR_TEMPLATE_INCONSISTENT.
func NewTemplate(attrs []Attr) (Template, error) {
	t := Template{}
	for _, a := range attrs {
		if prev, ok := t[a.Type]; ok && !bytes.Equal(prev, a.Value) {
			return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x given twice with different values", a.Type)
		}
		t[a.Type] = a.Value
	}
	return t, nil
}

// Bool reads a CK_BBOOL from the template: (value, present, error).
func (t Template) Bool(typ ck.AttributeType) (bool, bool, error) {
	v, ok := t[typ]
	if !ok {
		return false, false, nil
	}
	if len(v) != 1 {
		return false, true, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x: CK_BBOOL must be 1 byte", typ)
	}
	return v[0] != 0, true, nil
}

// ULong reads a CK_ULONG from the template.
func (t Template) ULong(typ ck.AttributeType) (uint64, bool, error) {
	v, ok := t[typ]
	if !ok {
		return 0, false, nil
	}
	if len(v) != 8 {
		return 0, true, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x: CK_ULONG must be 8 bytes", typ)
	}
	return binary.NativeEndian.Uint64(v), true, nil
}

// Matches reports whether every template entry equals the object's value.
func (a Attrs) Matches(t []Attr) bool {
	for _, e := range t {
		v, ok := a[e.Type]
		if !ok || string(v) != string(e.Value) {
			return false
		}
	}
	return true
}

// AttrResult is one answer of C_GetAttributeValue: the value, or the RV that
// explains why there is none (its length is then CK_UNAVAILABLE_INFORMATION).
type AttrResult struct {
	Value []byte
	RV    ck.RV
}

// setOrigin records where a key came from. A key made here has CKA_LOCAL
// and its mechanism; one brought in (imported, derived) has neither. A key
// is always sensitive / never extractable only if it was so from the start
// (an imported key never was: its value existed outside).
func (a Attrs) setOrigin(local bool, mech ck.MechType, alwaysSensitive, neverExtractable bool) {
	a.SetBool(ck.CKA_LOCAL, local)
	if !local {
		mech = ck.MechType(ck.UnavailableInformation)
	}
	a.SetULong(ck.CKA_KEY_GEN_MECHANISM, uint64(mech))
	if ck.ObjectClass(a.ULongOr(ck.CKA_CLASS)) != ck.CKO_PUBLIC_KEY {
		a.SetBool(ck.CKA_ALWAYS_SENSITIVE, alwaysSensitive && a.Bool(ck.CKA_SENSITIVE))
		a.SetBool(ck.CKA_NEVER_EXTRACTABLE, neverExtractable && !a.Bool(ck.CKA_EXTRACTABLE))
	}
}

// ULongOr is the CK_ULONG value of t, or CK_UNAVAILABLE_INFORMATION.
func (a Attrs) ULongOr(t ck.AttributeType) uint64 {
	if v, ok := a.ULong(t); ok {
		return v
	}
	return ck.UnavailableInformation
}

// typedULong reads a CK_ULONG of a typed kind (class, key type) from t.
func typedULong[T ~uint64](t Template, typ ck.AttributeType) (T, bool, error) {
	v, ok, err := t.ULong(typ)
	return T(v), ok, err
}

// classTemplate indexes a template that must name its object class.
func classTemplate(attrs []Attr) (Template, ck.ObjectClass, error) {
	t, err := NewTemplate(attrs)
	if err != nil {
		return nil, 0, err
	}
	class, ok, err := typedULong[ck.ObjectClass](t, ck.CKA_CLASS)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	return t, class, nil
}
