package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tpm11/tpm11/ck"
)

// The object record on disk. Format 2 (written since 0.x): the attributes
// are a list of typed values by name, so a record reads the same on any
// host and says what each value is without the token's schema:
//
//	{"format":2,"uid":"…","attributes":[{"type":"CKA_CLASS","ulong":3},
//	 {"type":"CKA_TOKEN","bool":true},{"type":"CKA_LABEL","bytes":"a2V5"},
//	 {"type":"CKA_START_DATE","date":"20260101"},
//	 {"type":"CKA_ALLOWED_MECHANISMS","mechanisms":[4161]}, …], …}
//
// Format 3 is format 2 with template attributes (template.go):
// {"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_CLASS","ulong":4}]}.
// A record is written in format 3 only when it has one, so a store without
// templates stays readable by code that knows only format 2, and code of
// format 2 refuses a record with a template rather than misread it.
//
// Format 1 (no "format"; read, never written) kept the attributes as a map
// of their PKCS#11 C encoding: CK_ULONG as 8 host-order bytes.
//
// In memory a record's attributes are Attrs, in the C encoding
// C_GetAttributeValue returns; the typed list is made from them by the
// token, which knows each attribute's type (tpmtoken/schema.go), and read
// back here. A record is bounded and checked when read: a hostile file is
// an error, never a panic.

// RecordFormat is the newest format this code writes (format 2 when the
// record has no template attribute).
const RecordFormat = 3

// Limits of a record read from disk.
const (
	maxRecord     = maxObject // bytes of one object file
	maxAttributes = 512
	maxMechanisms = 1024
)

// Kind is the type of an attribute's value.
type Kind int

const (
	KindBytes Kind = iota
	KindBool
	KindULong
	KindDate
	KindMechanisms
	KindTemplate // an array of attributes (template.go)
)

// Attribute is one typed attribute of a record: Type and exactly one
// value.
type Attribute struct {
	Type       string   `json:"type"` // "CKA_LABEL", or "0x…" for one without a name (vendor-defined)
	Bool       *bool    `json:"bool,omitempty"`
	ULong      *uint64  `json:"ulong,omitempty"`
	Bytes      *[]byte  `json:"bytes,omitempty"`
	Date       *string  `json:"date,omitempty"` // "" or YYYYMMDD
	Mechanisms []uint64 `json:"mechanisms,omitempty"`
	// Template is a template attribute's value (format 3).
	Template *[]Attribute `json:"template,omitempty"`
}

var attrNumbers = func() map[string]uint64 {
	m := make(map[string]uint64, len(attrNames))
	for v, n := range attrNames {
		m[n] = v
	}
	return m
}()

func attrName(t ck.AttributeType) string {
	if n, ok := attrNames[uint64(t)]; ok {
		return n
	}
	return fmt.Sprintf("0x%08x", uint64(t))
}

func attrType(name string) (ck.AttributeType, error) {
	if v, ok := attrNumbers[name]; ok {
		return ck.AttributeType(v), nil
	}
	if strings.HasPrefix(name, "0x") {
		if v, err := strconv.ParseUint(name[2:], 16, 64); err == nil {
			return ck.AttributeType(v), nil
		}
	}
	return 0, fmt.Errorf("unknown attribute %q", name)
}

// Typed makes the typed attribute list of attrs (C encoding), each by its
// kind. A value that is not of its kind (which the token never makes) is
// kept as bytes.
func Typed(attrs map[ck.AttributeType][]byte, kind func(ck.AttributeType) Kind) []Attribute {
	out := make([]Attribute, 0, len(attrs))
	for t, v := range attrs {
		out = append(out, typedValue(t, v, kind))
	}
	sortAttributes(out)
	return out
}

// typedValue is one attribute typed by its kind (the attributes of a
// template by theirs).
func typedValue(t ck.AttributeType, v []byte, kind func(ck.AttributeType) Kind) Attribute {
	a := Attribute{Type: attrName(t)}
	switch k := kind(t); {
	case k == KindBool && len(v) == 1:
		b := v[0] != 0
		a.Bool = &b
	case k == KindULong && len(v) == 8:
		u := binary.NativeEndian.Uint64(v)
		a.ULong = &u
	case k == KindDate && (len(v) == 0 || len(v) == 8) && isDigits(v):
		d := string(v)
		a.Date = &d
	case k == KindMechanisms && len(v)%8 == 0 && len(v) > 0:
		for i := 0; i < len(v); i += 8 {
			a.Mechanisms = append(a.Mechanisms, binary.NativeEndian.Uint64(v[i:]))
		}
	case k == KindTemplate && ck.IsTemplate(t):
		if a.Template = typedTemplate(v, kind); a.Template != nil {
			break
		}
		fallthrough
	default:
		b := append([]byte{}, v...)
		a.Bytes = &b
	}
	return a
}

func sortAttributes(as []Attribute) {
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].Type < as[j-1].Type; j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
}

func isDigits(v []byte) bool {
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// value is a's value in the C encoding.
func (a *Attribute) value() ([]byte, error) {
	var out []byte
	n := 0
	if a.Bool != nil {
		n++
		out = []byte{0}
		if *a.Bool {
			out[0] = 1
		}
	}
	if a.ULong != nil {
		n++
		out = binary.NativeEndian.AppendUint64(nil, *a.ULong)
	}
	if a.Bytes != nil {
		n++
		out = append([]byte{}, *a.Bytes...)
	}
	if a.Date != nil {
		n++
		if d := []byte(*a.Date); (len(d) == 0 || len(d) == 8) && isDigits(d) {
			out = d
		} else {
			return nil, fmt.Errorf("attribute %s: date %q is not YYYYMMDD", a.Type, *a.Date)
		}
	}
	if a.Mechanisms != nil {
		n++
		if len(a.Mechanisms) > maxMechanisms {
			return nil, fmt.Errorf("attribute %s: %d mechanisms", a.Type, len(a.Mechanisms))
		}
		out = []byte{}
		for _, m := range a.Mechanisms {
			out = binary.NativeEndian.AppendUint64(out, m)
		}
	}
	if a.Template != nil {
		n++
		var err error
		if out, err = templateValue(a.Type, *a.Template); err != nil {
			return nil, err
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("attribute %s has %d values", a.Type, n)
	}
	return out, nil
}

// record is the JSON form of Object.
type record struct {
	Format     int                         `json:"format,omitempty"`
	UID        string                      `json:"uid"`
	Attributes []Attribute                 `json:"attributes,omitempty"`
	Legacy     map[ck.AttributeType][]byte `json:"attrs,omitempty"` // format 1
	Public     []byte                      `json:"tpm_public,omitempty"`
	Private    []byte                      `json:"tpm_private,omitempty"`
	Sealed     []byte                      `json:"sealed,omitempty"`
	Parent     string                      `json:"parent,omitempty"`
	Auth       []byte                      `json:"auth,omitempty"`
}

// MarshalJSON writes o in format 2, or 3 if it has a template attribute:
// its Attributes, or, if the token gave none (store tests), its Attrs as
// bytes.
func (o *Object) MarshalJSON() ([]byte, error) {
	as := o.Attributes
	if as == nil {
		as = Typed(o.Attrs, func(ck.AttributeType) Kind { return KindBytes })
	}
	format := 2
	for i := range as {
		if as[i].Template != nil {
			format = 3
		}
	}
	return json.Marshal(record{Format: format, UID: o.UID, Attributes: as, Public: o.Public,
		Private: o.Private, Sealed: o.Sealed, Parent: o.Parent, Auth: o.Auth})
}

var errRecordTooLarge = errors.New("object record too large")

// UnmarshalJSON reads a record of format 1 or 2, checked and bounded.
func (o *Object) UnmarshalJSON(b []byte) error {
	if len(b) > maxRecord {
		return errRecordTooLarge
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if r.UID == "" || len(r.UID) > 128 || strings.ContainsAny(r.UID, "/\x00") {
		return fmt.Errorf("object record with uid %.40q", r.UID)
	}
	if r.Format > RecordFormat {
		return fmt.Errorf("object record format %d is newer than this code (%d)", r.Format, RecordFormat)
	}
	if len(r.Attributes)+len(r.Legacy) > maxAttributes {
		return fmt.Errorf("object record with %d attributes", len(r.Attributes)+len(r.Legacy))
	}
	if r.Format == 0 && len(r.Attributes) > 0 || r.Format >= 2 && r.Legacy != nil {
		return errors.New("object record mixes formats")
	}
	attrs := r.Legacy
	if r.Format >= 2 {
		attrs = make(map[ck.AttributeType][]byte, len(r.Attributes))
		for i := range r.Attributes {
			a := &r.Attributes[i]
			t, err := attrType(a.Type)
			if err != nil {
				return err
			}
			if _, dup := attrs[t]; dup {
				return fmt.Errorf("attribute %s twice", a.Type)
			}
			if a.Template != nil && (r.Format < 3 || !ck.IsTemplate(t)) {
				return fmt.Errorf("attribute %s: a template in a record of format %d", a.Type, r.Format)
			}
			if attrs[t], err = a.value(); err != nil {
				return err
			}
		}
	}
	if attrs == nil {
		attrs = map[ck.AttributeType][]byte{}
	}
	*o = Object{UID: r.UID, Attrs: attrs, Public: r.Public, Private: r.Private,
		Sealed: r.Sealed, Parent: r.Parent, Auth: r.Auth}
	return nil
}
