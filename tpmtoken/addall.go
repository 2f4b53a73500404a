package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// addAll is add for objects that exist together or not at all (a key
// pair): their token objects are written to the store in one atomic step,
// so a process killed meanwhile never leaves a private key without its
// public half; then all of them become visible.
func (t *Token) addAll(objs ...*Object) error {
	var recs []*store.Object
	for _, o := range objs {
		if _, clear := o.Attrs[ck.CKA_VALUE]; clear && o.session == 0 && o.class() == ck.CKO_SECRET_KEY {
			return ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a key whose value is readable cannot be a token object")
		}
		if o.session == 0 {
			if err := t.protect(o); err != nil {
				return err
			}
			recs = append(recs, o.record())
		}
	}
	if len(recs) > 0 {
		if err := t.objs.PutAll(recs...); err != nil {
			return storeErr(ck.CKR_DEVICE_ERROR, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalidate()
	for _, o := range objs {
		o.Handle = t.handleFor(o.UID)
		t.objects[o.Handle] = o
		t.byUID[o.UID] = o.Handle
	}
	return nil
}
