package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tpm11/tpm11/ck"
)

// Template attributes (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
// CKA_DERIVE_TEMPLATE, CKA_ENCAPSULATE_TEMPLATE, CKA_DECAPSULATE_TEMPLATE)
// hold an array of attributes. In memory (an object's Attrs, like every
// value there, one byte string) the array is its attributes in order, each
// as its type and its value's length (8 host-order bytes each) and its
// value in the C encoding. On disk (format 3) it is a list of typed
// attributes like the object's own. A template holds no template: the
// token refuses one nested (key_objects.md lets it deny recursion).

// MaxTemplateAttrs bounds the attributes of one template attribute.
const MaxTemplateAttrs = 64

// TemplateAttr is one attribute of a template attribute's value.
type TemplateAttr struct {
	Type  ck.AttributeType
	Value []byte
}

// EncodeTemplate is the in-memory value of a template attribute.
func EncodeTemplate(as []TemplateAttr) []byte {
	n := 0
	for _, a := range as {
		n += 16 + len(a.Value)
	}
	out := make([]byte, 0, n)
	for _, a := range as {
		out = binary.NativeEndian.AppendUint64(out, uint64(a.Type))
		out = binary.NativeEndian.AppendUint64(out, uint64(len(a.Value)))
		out = append(out, a.Value...)
	}
	return out
}

var errTemplate = errors.New("not a template attribute's value")

// DecodeTemplate reads an in-memory template value, bounded and checked:
// a value that is not one (which the token never makes) is an error.
// The values returned are copies.
func DecodeTemplate(v []byte) ([]TemplateAttr, error) {
	var out []TemplateAttr
	for len(v) > 0 {
		if len(v) < 16 || len(out) == MaxTemplateAttrs {
			return nil, errTemplate
		}
		t := ck.AttributeType(binary.NativeEndian.Uint64(v))
		n := binary.NativeEndian.Uint64(v[8:])
		v = v[16:]
		if n > uint64(len(v)) || ck.IsTemplate(t) {
			return nil, errTemplate
		}
		out = append(out, TemplateAttr{Type: t, Value: append([]byte{}, v[:n]...)})
		v = v[n:]
	}
	return out, nil
}

// typedTemplate is the typed list of a template value v (nil if v is not
// one: it is then kept as bytes).
func typedTemplate(v []byte, kind func(ck.AttributeType) Kind) *[]Attribute {
	as, err := DecodeTemplate(v)
	if err != nil {
		return nil
	}
	out := make([]Attribute, 0, len(as))
	for _, a := range as {
		out = append(out, typedValue(a.Type, a.Value, kind))
	}
	return &out
}

// templateValue is the in-memory value of a template read from disk.
func templateValue(typ string, as []Attribute) ([]byte, error) {
	if len(as) > MaxTemplateAttrs {
		return nil, fmt.Errorf("attribute %s: a template of %d attributes", typ, len(as))
	}
	out := make([]TemplateAttr, 0, len(as))
	for i := range as {
		a := &as[i]
		t, err := attrType(a.Type)
		if err != nil {
			return nil, err
		}
		if a.Template != nil || ck.IsTemplate(t) {
			return nil, fmt.Errorf("attribute %s: a template in a template", typ)
		}
		v, err := a.value()
		if err != nil {
			return nil, err
		}
		out = append(out, TemplateAttr{Type: t, Value: v})
	}
	return EncodeTemplate(out), nil
}
