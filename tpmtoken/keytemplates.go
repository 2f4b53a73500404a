package tpmtoken

import (
	"bytes"
	"sync"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Template attributes (key_objects.md "Template Attributes"): a key holds
// a template that limits what it is used on. CKA_WRAP_TEMPLATE and
// CKA_ENCAPSULATE_TEMPLATE are matched, by C_FindObjects' rules, against
// the key wrapped or the key an encapsulation makes: a mismatch is
// CKR_KEY_HANDLE_INVALID, as C_WrapKey and C_EncapsulateKey say.
// CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE and CKA_DECAPSULATE_TEMPLATE
// are added to the new key's template; the caller's template is applied
// after them, and a value that contradicts one is
// CKR_TEMPLATE_INCONSISTENT. The values are deep copies (store/template.go:
// the in-memory and on-disk forms); a template holds no template. They are
// given when a key is made and fixed afterwards (the attribute tables give
// them no footnote 8): a limit that could be lifted would be none.

// EncodeTemplate is the value of a template attribute holding as (the
// module's decoding of a caller's CK_ATTRIBUTE array).
func EncodeTemplate(as []Attr) []byte {
	ts := make([]store.TemplateAttr, len(as))
	for i, a := range as {
		ts[i] = store.TemplateAttr(a)
	}
	return store.EncodeTemplate(ts)
}

// DecodeTemplate is the attributes a template attribute's value holds.
func DecodeTemplate(v []byte) ([]Attr, error) {
	ts, err := store.DecodeTemplate(v)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	as := make([]Attr, len(ts))
	for i, t := range ts {
		as[i] = Attr(t)
	}
	return as, nil
}

// checkTemplate is checkKind for a template attribute: a value the token
// made from a CK_ATTRIBUTE array, none nested, each attribute of its type
// where some class declares it (a CK_BBOOL of one byte, ...).
func checkTemplate(typ ck.AttributeType, v []byte) error {
	as, err := DecodeTemplate(v)
	if err != nil {
		return err
	}
	for _, a := range as {
		if k, ok := anyKind()[a.Type]; ok {
			if err := checkKind(a.Type, k, a.Value); err != nil {
				return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "in attribute 0x%x: %v", typ, err)
			}
		}
	}
	return nil
}

// anyKind is the type of each attribute some class declares (one
// attribute has one type in every class), for attributes known without
// their class: those of a template.
var anyKind = sync.OnceValue(func() map[ck.AttributeType]kind {
	schemasOnce.Do(loadSchemas) // made at first use (schema.go)
	m := map[ck.AttributeType]kind{}
	for _, s := range schemas {
		for typ, d := range s.defs {
			m[typ] = d.kind
		}
	}
	return m
})

// sameValue says whether two values of attribute typ are equal: CK_BBOOLs
// by truth (a caller may say CK_TRUE with any byte but 0), others byte for
// byte.
func sameValue(typ ck.AttributeType, x, y []byte) bool {
	if anyKind()[typ] == kindBool && len(x) == 1 && len(y) == 1 {
		return (x[0] != 0) == (y[0] != 0)
	}
	return bytes.Equal(x, y)
}

// keyTemplate is template attribute typ of key o (nil, nil if it has none).
func keyTemplate(o *Object, typ ck.AttributeType) ([]Attr, error) {
	v, ok := o.Attrs[typ]
	if !ok {
		return nil, nil
	}
	as, err := DecodeTemplate(v)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err) // the token wrote it: never a caller's fault
	}
	return as, nil
}

// withKeyTemplate is the template of a key made with key o (C_UnwrapKey,
// C_DeriveKey, C_DecapsulateKey): o's template attribute typ, then the
// caller's tmpl applied after it. A caller's value that contradicts the
// key's is CKR_TEMPLATE_INCONSISTENT.
func withKeyTemplate(o *Object, typ ck.AttributeType, tmpl []Attr) ([]Attr, error) {
	kt, err := keyTemplate(o, typ)
	if err != nil || len(kt) == 0 {
		return tmpl, err
	}
	out := make([]Attr, 0, len(kt)+len(tmpl))
	for _, k := range kt {
		given := false
		for _, c := range tmpl {
			if c.Type != k.Type {
				continue
			}
			if !sameValue(k.Type, k.Value, c.Value) {
				return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x contradicts the key's template 0x%x", k.Type, typ)
			}
			given = true
		}
		if !given {
			out = append(out, k)
		}
	}
	return append(out, tmpl...), nil
}

// matchesKeyTemplate says whether attributes a (of the key wrapped or
// encapsulated) match template attribute typ of key o by C_FindObjects'
// rules: each attribute of the template is a's, with the same value. A
// key without the template attribute matches any.
func matchesKeyTemplate(o *Object, typ ck.AttributeType, a Attrs) (bool, error) {
	kt, err := keyTemplate(o, typ)
	if err != nil {
		return false, err
	}
	for _, e := range kt {
		v, ok := a[e.Type]
		if !ok || !sameValue(e.Type, v, e.Value) {
			return false, nil
		}
	}
	return true, nil
}
