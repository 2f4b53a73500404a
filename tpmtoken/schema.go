package tpmtoken

import (
	"bytes"
	"encoding/binary"
	"sync"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// The attribute schema: for each object class (and key or certificate
// type) one declaration of each attribute it has — the type of its value,
// its default, which operations may give it in a template, whether it
// changes afterwards (C_SetAttributeValue, C_CopyObject) and whether it is
// hidden while a key is sensitive. The classes are declared in
// schema_<class>.go; this file applies them. Every way an object comes to
// be (C_CreateObject, C_GenerateKey(Pair), C_UnwrapKey, C_DeriveKey,
// LinkKeyFile, the tpm11 command through those) and every change of one
// goes through build, set or copyRule here, so a rule is written once.

// kind is the type of an attribute's value (the store writes each by it).
type kind = store.Kind

const (
	kindBytes = store.KindBytes      // a byte array: DER, UTF-8 text, a big integer
	kindBool  = store.KindBool       // CK_BBOOL: one byte
	kindULong = store.KindULong      // CK_ULONG (CK_OBJECT_CLASS, CK_KEY_TYPE, ...): 8 bytes, host order
	kindDate  = store.KindDate       // CK_DATE: empty, or YYYYMMDD in digits
	kindMechs = store.KindMechanisms // CK_MECHANISM_TYPE array: a multiple of 8 bytes
	kindTmpl  = store.KindTemplate   // CK_ATTRIBUTE array: a template attribute (keytemplates.go)
)

// op is an operation that makes or changes an object.
type op uint16

const (
	opCreate   op = 1 << iota // C_CreateObject (an import, for keys)
	opGenerate                // C_GenerateKey, C_GenerateKeyPair
	opUnwrap                  // C_UnwrapKey
	opDerive                  // C_DeriveKey
	opLink                    // LinkKeyFile (a TSS2 key file)

	opMake   = opCreate | opGenerate | opUnwrap | opDerive | opLink
	opImport = opCreate | opUnwrap // the value comes from outside
)

// change is how an attribute may change once the object exists.
type change uint8

const (
	fixed   change = iota // C_SetAttributeValue: CKR_ATTRIBUTE_READ_ONLY
	free                  // any new value (and in C_CopyObject's template)
	toFalse               // only to CK_FALSE: a TPM key's uses are fixed when it is made, so one can be dropped, never added
	same                  // only to the value it has
)

// truth is what becomes of CK_TRUE given for a CK_BBOOL.
type truth uint8

const (
	honoured truth = iota
	dropped        // accepted and stored as CK_FALSE: a usage the key type has no mechanism for (OpenSSL's pkcs11-provider asks for CKA_WRAP on every EC public key)
	refused        // CKR_ATTRIBUTE_VALUE_INVALID: the token cannot make such a key
)

// attrDef declares one attribute of a class.
type attrDef struct {
	typ  ck.AttributeType
	kind kind
	// given: the operations whose template may carry it; in any other
	// the token sets it: CKR_ATTRIBUTE_READ_ONLY.
	given op
	// input: the operations that read it themselves (key material, a
	// generation parameter) rather than keep it as given.
	input op
	// required: the operations whose template must carry it
	// (CKR_TEMPLATE_INCOMPLETE).
	required op
	// def is the value when the template is silent (nil: none); defOf,
	// if set instead, computes it from the attributes declared before it.
	def    []byte
	defOf  func(Attrs) []byte
	change change
	// copy: C_CopyObject's template may set it (besides the free ones).
	copy  bool
	truth truth
	// hidden: never revealed while the key is sensitive or not
	// extractable (CKR_ATTRIBUTE_SENSITIVE).
	hidden bool
}

// schema is the declaration of one class (and key or certificate type).
type schema struct {
	class ck.ObjectClass
	sub   uint64 // the key type or certificate type; 0 for others
	defs  map[ck.AttributeType]*attrDef
	order []ck.AttributeType // declaration order: defaults are applied, and errors found, in it
}

var (
	vTrue, vFalse, vEmpty = []byte{1}, []byte{0}, []byte{}
)

func vULong(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// declare makes a schema of rows; a later row of the same type replaces
// an earlier one (a class refines what it shares with others).
// Its rows are held in one array, sized once: three allocations a class
// instead of one per row, in every process that touches an object.
func declare(class ck.ObjectClass, sub uint64, rows ...[]attrDef) *schema {
	n := 0
	for _, rs := range rows {
		n += len(rs)
	}
	s := &schema{class: class, sub: sub, defs: make(map[ck.AttributeType]*attrDef, n), order: make([]ck.AttributeType, 0, n)}
	held := make([]attrDef, 0, n)
	for _, rs := range rows {
		for _, d := range rs {
			if p, ok := s.defs[d.typ]; ok {
				*p = d
				continue
			}
			held = append(held, d)
			s.defs[d.typ] = &held[len(held)-1]
			s.order = append(s.order, d.typ)
		}
	}
	return s
}

// schemas holds every class the token makes. It is made at its first use
// (schemaOf), not at init: a process that loads the module and logs in
// without touching an object (p11-kit listing modules, a client that
// only checks the token) does not pay for it at every dlopen.
var (
	schemas      map[[2]uint64]*schema
	schemasOnce  sync.Once
	schemaMakers []func()
)

func loadSchemas() {
	schemas = map[[2]uint64]*schema{}
	for _, f := range schemaMakers {
		f()
	}
}

// declared adds a maker of schemas (each calls register), run once, at
// the first schemaOf. Called from init only.
func declared(f func()) { schemaMakers = append(schemaMakers, f) }

func register(ss ...*schema) {
	for _, s := range ss {
		schemas[[2]uint64{uint64(s.class), s.sub}] = s
	}
}

// schemaOf is the schema of a class and its key or certificate type.
func schemaOf(class ck.ObjectClass, sub uint64) *schema {
	schemasOnce.Do(loadSchemas)
	return schemas[[2]uint64{uint64(class), sub}]
}

// schemaFor is schemaOf for a class and type a template names: one the
// token does not make is CKR_ATTRIBUTE_VALUE_INVALID.
func schemaFor(class ck.ObjectClass, sub uint64) (*schema, error) {
	if s := schemaOf(class, sub); s != nil {
		return s, nil
	}
	return nil, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "the token makes no object of class 0x%x, type 0x%x", class, sub)
}

// subtype is the attribute that selects a class's schema.
func subtype(class ck.ObjectClass) ck.AttributeType {
	switch class {
	case ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_SECRET_KEY:
		return ck.CKA_KEY_TYPE
	case ck.CKO_CERTIFICATE:
		return ck.CKA_CERTIFICATE_TYPE
	}
	return 0
}

// schemaOfObject is the schema of an existing object (nil for none).
func schemaOfObject(a Attrs) *schema {
	class := ck.ObjectClass(a.ULongOr(ck.CKA_CLASS))
	var sub uint64
	if st := subtype(class); st != 0 {
		sub = a.ULongOr(st)
	}
	return schemaOf(class, sub)
}

// checkKind checks that v is a value of kind k.
func checkKind(typ ck.AttributeType, k kind, v []byte) error {
	ok := true
	switch k {
	case kindBool:
		ok = len(v) == 1
	case kindULong:
		ok = len(v) == 8
	case kindDate:
		ok = validDate(v)
	case kindMechs:
		ok = len(v)%8 == 0
	case kindTmpl:
		return checkTemplate(typ, v)
	}
	if !ok {
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x: not a %s", typ, kindNames[k])
	}
	return nil
}

var kindNames = map[kind]string{kindBytes: "byte array", kindBool: "CK_BBOOL", kindULong: "CK_ULONG",
	kindDate: "CK_DATE", kindMechs: "CK_MECHANISM_TYPE array", kindTmpl: "CK_ATTRIBUTE array"}

// validDate says whether v is a CK_DATE: empty, or YYYYMMDD in digits.
func validDate(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if len(v) != 8 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// buildOpts adapt a build to one object: a token's or a key file's
// defaults, and the usages this key cannot have.
type buildOpts struct {
	defaults Attrs
	cannot   []ck.AttributeType
}

// build makes the attributes of a new object of s from a caller's
// template for operation o: each given attribute must be one of the class
// (CKR_ATTRIBUTE_TYPE_INVALID), one o may give (CKR_ATTRIBUTE_READ_ONLY),
// and of its type (CKR_ATTRIBUTE_VALUE_INVALID); the class and type given
// must be s's (CKR_TEMPLATE_INCONSISTENT); what o must be given is there
// (CKR_TEMPLATE_INCOMPLETE). Inputs of o stay in the template for the
// operation to read; everything else is copied, and defaults fill the
// rest. The token's own attributes (origin, public values) are set by the
// operation afterwards.
func (s *schema) build(o op, tmpl Template, opts buildOpts) (Attrs, error) {
	if err := s.check(o, tmpl); err != nil {
		return nil, err
	}
	a := Attrs{}
	a.SetULong(ck.CKA_CLASS, uint64(s.class))
	if st := subtype(s.class); st != 0 {
		a.SetULong(st, s.sub)
	}
	for _, typ := range s.order {
		d := s.defs[typ]
		v, given := tmpl[typ]
		switch {
		case typ == ck.CKA_CLASS || typ == subtype(s.class):
		case given && d.input&o != 0:
		case given && d.kind == kindBool && v[0] != 0 && (d.truth == dropped || cannot(opts, typ)):
			a.SetBool(typ, false)
		case given && d.kind == kindBool:
			a.SetBool(typ, v[0] != 0)
		case given:
			a[typ] = bytes.Clone(v)
		case opts.defaults[typ] != nil:
			a[typ] = bytes.Clone(opts.defaults[typ])
		case d.def != nil:
			a[typ] = bytes.Clone(d.def)
		case d.defOf != nil:
			a[typ] = bytes.Clone(d.defOf(a))
		}
	}
	return a, nil
}

func cannot(opts buildOpts, typ ck.AttributeType) bool {
	for _, t := range opts.cannot {
		if t == typ {
			return true
		}
	}
	return false
}

// check applies build's rules to a template without building.
func (s *schema) check(o op, tmpl Template) error {
	for typ, v := range tmpl {
		d := s.defs[typ]
		switch {
		case d == nil:
			return ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x for class 0x%x type 0x%x", typ, s.class, s.sub)
		case d.given&o == 0:
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x is set by the token", typ)
		}
		if err := checkKind(typ, d.kind, v); err != nil {
			return err
		}
		switch {
		case typ == ck.CKA_CLASS && binary.NativeEndian.Uint64(v) != uint64(s.class),
			typ == subtype(s.class) && binary.NativeEndian.Uint64(v) != s.sub:
			return ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "attribute 0x%x", typ)
		case d.kind == kindBool && v[0] != 0 && d.truth == refused:
			return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x cannot be true on this object", typ)
		}
	}
	for _, typ := range s.order {
		if _, ok := tmpl[typ]; !ok && s.defs[typ].required&o != 0 {
			return ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "attribute 0x%x is required", typ)
		}
	}
	return nil
}

// set applies C_SetAttributeValue's template to next (a copy of the
// object's attributes cur) by the schema's rules.
func (s *schema) set(cur, next Attrs, tmpl []Attr) error {
	for _, e := range tmpl {
		d := s.defs[e.Type]
		if d == nil {
			return ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x", e.Type)
		}
		if err := checkKind(e.Type, d.kind, e.Value); err != nil {
			return err
		}
		switch d.change {
		case free:
		case same:
			if !bytes.Equal(cur[e.Type], e.Value) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", e.Type)
			}
		case toFalse:
			if e.Value[0] != 0 && !cur.Bool(e.Type) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "usage 0x%x cannot be added to a TPM key", e.Type)
			}
		default:
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", e.Type)
		}
		next[e.Type] = bytes.Clone(e.Value)
	}
	return nil
}

// copyTo applies C_CopyObject's template to c, the copy.
func (s *schema) copyTo(c Attrs, tmpl Template) error {
	for typ, v := range tmpl {
		d := s.defs[typ]
		if d == nil {
			return ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x", typ)
		}
		if !d.copy && d.change != free {
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", typ)
		}
		if err := checkKind(typ, d.kind, v); err != nil {
			return err
		}
		c[typ] = bytes.Clone(v)
	}
	return nil
}

// hidden says whether attribute typ of the object a is one
// C_GetAttributeValue must not reveal (CKR_ATTRIBUTE_SENSITIVE).
func hidden(a Attrs, typ ck.AttributeType) bool {
	s := schemaOfObject(a)
	if s == nil || s.defs[typ] == nil || !s.defs[typ].hidden {
		return false
	}
	return a.Bool(ck.CKA_SENSITIVE) || !a.Bool(ck.CKA_EXTRACTABLE)
}

// wellTyped checks attributes read from the store against their class's
// schema: every declared CK_BBOOL, CK_ULONG and mechanism list of its size
// (the token always wrote them so). A record of the first format carries
// no types (record.go), so this is where its values are checked. Dates are
// not: keys kept a caller's CK_DATE unchecked before the schema, and such a
// key must not vanish; a record of an unknown class has nothing to check.
func wellTyped(a Attrs) error {
	s := schemaOfObject(a)
	if s == nil {
		return nil
	}
	for typ, v := range a {
		if d := s.defs[typ]; d != nil && d.kind != kindDate {
			if err := checkKind(typ, d.kind, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// attrKind is the type of attribute typ's value in class a (when the
// class does not declare it, as another does: an attribute of a template;
// else kindBytes).
func attrKind(a Attrs, typ ck.AttributeType) kind {
	switch typ {
	case ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_CERTIFICATE_TYPE:
		return kindULong
	}
	if s := schemaOfObject(a); s != nil && s.defs[typ] != nil {
		return s.defs[typ].kind
	}
	if k, ok := anyKind()[typ]; ok {
		return k
	}
	return kindBytes
}
