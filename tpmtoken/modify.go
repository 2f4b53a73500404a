package tpmtoken

import (
	"bytes"
	"encoding/json"

	"github.com/tpm11/tpm11/ck"
)

// modifiableAttrs may change after creation (when CKA_MODIFIABLE is true).
// Usage flags may only be turned off for keys: a TPM key's allowed use is
// fixed by its template, so turning one on is refused.
var modifiableAttrs = []ck.AttributeType{ck.CKA_LABEL, ck.CKA_ID, ck.CKA_SUBJECT, ck.CKA_START_DATE,
	ck.CKA_END_DATE, ck.CKA_APPLICATION, ck.CKA_OBJECT_ID, ck.CKA_VALUE}

// SetAttributeValue changes attributes of obj with the spec's rules.
func (l *Library) SetAttributeValue(h, obj uint64, tmpl []Attr) error {
	s, o, err := l.changeableObject(h, obj, ck.CKA_MODIFIABLE)
	if err != nil {
		return err
	}
	next := Attrs{}
	for k, v := range o.Attrs {
		next[k] = v
	}
	class := o.class()
	certType, _ := o.Attrs.ULong(ck.CKA_CERTIFICATE_TYPE)
	if class == ck.CKO_CERTIFICATE && o.Attrs.Bool(ck.CKA_TRUSTED) {
		return ck.Errorf(ck.CKR_ACTION_PROHIBITED, "a trusted certificate cannot be modified")
	}
	for _, a := range tmpl {
		switch {
		case a.Type == ck.CKA_VALUE && class != ck.CKO_DATA:
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "CKA_VALUE")
		case class == ck.CKO_CERTIFICATE && a.Type != ck.CKA_LABEL:
			if !contains(certModifiable[certType], a.Type) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x of a certificate", a.Type)
			}
			next[a.Type] = bytes.Clone(a.Value)
		case contains(modifiableAttrs, a.Type):
			next[a.Type] = bytes.Clone(a.Value)
		case contains(usageAttrs, a.Type):
			t := Template{a.Type: a.Value}
			b, _, err := t.Bool(a.Type)
			if err != nil {
				return err
			}
			if b && !o.Attrs.Bool(a.Type) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "usage 0x%x cannot be added to a TPM key", a.Type)
			}
			next.SetBool(a.Type, b)
		case a.Type == ck.CKA_SENSITIVE || a.Type == ck.CKA_EXTRACTABLE || a.Type == ck.CKA_PRIVATE || a.Type == ck.CKA_TOKEN:
			if !bytes.Equal(o.Attrs[a.Type], a.Value) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", a.Type)
			}
		default:
			if _, known := o.Attrs[a.Type]; known {
				return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", a.Type)
			}
			return ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x", a.Type)
		}
	}
	n := *o
	n.Attrs = next
	if o.session == 0 {
		if err := s.tok.protect(&n); err != nil {
			return err
		}
		if err := s.tok.objs.Put(n.record()); err != nil {
			return storeErr(ck.CKR_DEVICE_ERROR, err)
		}
	}
	s.tok.mu.Lock()
	s.tok.invalidate()
	o.Attrs, o.seal, o.sealed = n.Attrs, n.seal, n.sealed
	s.tok.mu.Unlock()
	return nil
}

// CopyObject copies obj with tmpl's changes (an empty template is the
// plain copy NSS asks for). TPM keys copy as new objects over the same
// TPM-wrapped blobs: no key material leaves the TPM.
func (l *Library) CopyObject(h, obj uint64, tmpl []Attr) (uint64, error) {
	s, o, err := l.sessionObject(h, obj)
	if err != nil {
		return 0, err
	}
	if len(o.Attrs[ck.CKA_COPYABLE]) == 1 && !o.Attrs.Bool(ck.CKA_COPYABLE) {
		return 0, ck.E(ck.CKR_ACTION_PROHIBITED)
	}
	c := &Object{UID: newUID(), Attrs: Attrs{}, key: nil}
	for k, v := range o.Attrs {
		c.Attrs[k] = v
	}
	t, err := NewTemplate(tmpl)
	if err != nil {
		return 0, err
	}
	for typ, v := range t {
		switch {
		case typ == ck.CKA_TOKEN || typ == ck.CKA_PRIVATE || typ == ck.CKA_MODIFIABLE || typ == ck.CKA_DESTROYABLE:
			b, _, err := t.Bool(typ)
			if err != nil {
				return 0, err
			}
			c.Attrs.SetBool(typ, b)
		case contains(modifiableAttrs, typ) && (typ != ck.CKA_VALUE || o.class() == ck.CKO_DATA):
			c.Attrs[typ] = bytes.Clone(v)
		default:
			return 0, ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "attribute 0x%x", typ)
		}
	}
	if c.Attrs.Bool(ck.CKA_TOKEN) && !s.rw() {
		return 0, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if c.Attrs.Bool(ck.CKA_PRIVATE) && !s.tok.userLoggedIn() {
		return 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if o.key != nil {
		k := *o.key
		k.ID = "key:" + c.UID
		c.key = &k
	}
	if o.seal != nil { // the same sealed key and ciphertext serve the copy
		k := *o.seal
		k.ID = "data:" + c.UID
		c.seal, c.sealed = &k, o.sealed
	}
	c.Attrs[ck.CKA_UNIQUE_ID] = []byte(c.UID)
	if !c.Attrs.Bool(ck.CKA_TOKEN) {
		c.session = h
	}
	if err := s.tok.add(c); err != nil {
		return 0, err
	}
	return c.Handle, nil
}

// ObjectSize is the size of the object's stored record, in bytes.
func (l *Library) ObjectSize(h, obj uint64) (uint64, error) {
	_, o, err := l.sessionObject(h, obj)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(o.record())
	if err != nil {
		return 0, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	return uint64(len(b)), nil
}
