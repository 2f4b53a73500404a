package tpmtoken

import (
	"encoding/json"
	"maps"

	"github.com/tpm11/tpm11/ck"
)

// SetAttributeValue changes attributes of obj by its class's schema
// (change: free, only to false, only to the same value; schema.go).
func (l *Library) SetAttributeValue(h, obj uint64, tmpl []Attr) error {
	s, o, err := l.changeableObject(h, obj, ck.CKA_MODIFIABLE)
	if err != nil {
		return err
	}
	if o.class() == ck.CKO_CERTIFICATE && o.Attrs.Bool(ck.CKA_TRUSTED) {
		return ck.Errorf(ck.CKR_ACTION_PROHIBITED, "a trusted certificate cannot be modified")
	}
	sc := schemaOfObject(o.Attrs)
	if sc == nil {
		return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "object of class 0x%x", o.class())
	}
	next := maps.Clone(o.Attrs)
	if err := sc.set(o.Attrs, next, tmpl); err != nil {
		return err
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
	c := &Object{UID: newUID(), Attrs: maps.Clone(o.Attrs)}
	t, err := NewTemplate(tmpl)
	if err != nil {
		return 0, err
	}
	sc := schemaOfObject(o.Attrs)
	if sc == nil {
		return 0, ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "object of class 0x%x", o.class())
	}
	if err := sc.copyTo(c.Attrs, t); err != nil {
		return 0, err
	}
	if err := s.mayMake(c.Attrs); err != nil {
		return 0, err
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
