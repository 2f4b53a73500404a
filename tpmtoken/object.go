package tpmtoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Object is a token or session object as the application sees it.
type Object struct {
	Handle uint64
	UID    string
	Attrs  Attrs
	// session is the owning session of a session object, 0 for token objects.
	session uint64
	// key is the TPM key of a private key object.
	key *tpm.Loadable
	// seal and sealed are a private data object's sealed data key and
	// encrypted value (privdata.go).
	seal   *tpm.Loadable
	sealed []byte
	// keyAuth is a migrated key's authValue as the store keeps it,
	// encrypted (migrate.go).
	keyAuth []byte
}

func (o *Object) class() ck.ObjectClass {
	c, _ := o.Attrs.ULong(ck.CKA_CLASS)
	return ck.ObjectClass(c)
}
func (o *Object) keyType() ck.KeyType { k, _ := o.Attrs.ULong(ck.CKA_KEY_TYPE); return ck.KeyType(k) }
func (o *Object) private() bool       { return o.Attrs.Bool(ck.CKA_PRIVATE) }

// publicKey parses the object's public key from CKA_PUBLIC_KEY_INFO.
func (o *Object) publicKey() (crypto.PublicKey, error) {
	spki := o.Attrs[ck.CKA_PUBLIC_KEY_INFO]
	if len(spki) == 0 {
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	pk, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		if o.keyType() == ck.CKK_EC { // P-192: crypto/x509 lacks it
			c, x, y, err := mech.ParseSPKI(spki)
			if err != nil {
				return nil, ck.Wrap(ck.CKR_KEY_TYPE_INCONSISTENT, err)
			}
			return &ecdsa.PublicKey{Curve: c.Go, X: x, Y: y}, nil
		}
		if kt := o.keyType(); kt == ck.CKK_ML_DSA || kt == ck.CKK_ML_KEM {
			p, err := mech.ParsePQCPublic(spki) // crypto/x509 has neither
			if err != nil {
				return nil, ck.Wrap(ck.CKR_KEY_TYPE_INCONSISTENT, err)
			}
			return p, nil
		}
		return nil, ck.Wrap(ck.CKR_KEY_TYPE_INCONSISTENT, err)
	}
	return pk, nil
}

// allows reports whether CKA_ALLOWED_MECHANISMS, if set, lists m.
func (o *Object) allows(m ck.MechType) bool {
	list, ok := o.Attrs[ck.CKA_ALLOWED_MECHANISMS]
	if !ok {
		return true
	}
	for i := 0; i+8 <= len(list); i += 8 {
		if ck.MechType(binary.NativeEndian.Uint64(list[i:])) == m {
			return true
		}
	}
	return false
}

func newUID() string { return hex.EncodeToString(randBytes(16)) }

// handleFor is the object handle of uid: derived from the object's identity
// in the store, so it is the same in every process and after C_Finalize and
// C_Initialize (a forked child, a p11-kit server or a re-initialised client
// keeps using the handles it has). 62 bits: a collision among even a
// million objects has odds of 1 in 10^7; one is resolved by the next free
// value. Callers hold t.mu.
func (t *Token) handleFor(uid string) uint64 {
	d := sha256.Sum256([]byte("tpm11 object handle\x00" + uid))
	h := binary.BigEndian.Uint64(d[:8]) >> 2
	for h == 0 || (t.objects[h] != nil && t.objects[h].UID != uid) {
		h = (h + 1) & (1<<62 - 1)
	}
	return h
}

// refresh merges the store's objects (other processes' included) into the
// handle table. Callers hold t.mu.
func (t *Token) refresh() error {
	recs, changed, err := t.objs.Sync()
	if err != nil {
		return ck.Wrap(ck.CKR_DEVICE_ERROR, err)
	}
	if !changed {
		return nil
	}
	t.invalidate()
	if len(t.objects) == 0 {
		t.objects, t.byUID = make(map[uint64]*Object, len(recs)), make(map[string]uint64, len(recs))
	}
	if len(t.byUID) > 0 {
		inStore := make(map[string]bool, len(recs))
		for _, rec := range recs {
			inStore[rec.UID] = true
		}
		for uid, h := range t.byUID {
			if !inStore[uid] && t.objects[h] != nil && t.objects[h].session == 0 {
				delete(t.objects, h)
				delete(t.byUID, uid)
			}
		}
	}
	for _, rec := range recs {
		uid := rec.UID
		if wellTyped(rec.Attrs) != nil {
			continue // a record not of its class's schema (a hostile file): never an object
		}
		if h, ok := t.byUID[uid]; ok {
			fresh := t.fromRecord(rec)
			o := t.objects[h]
			o.Attrs, o.sealed = fresh.Attrs, fresh.sealed
			continue
		}
		o := t.fromRecord(rec)
		o.Handle = t.handleFor(uid)
		t.objects[o.Handle] = o
		t.byUID[uid] = o.Handle
	}
	return nil
}

func (t *Token) fromRecord(rec *store.Object) *Object {
	o := &Object{UID: rec.UID, Attrs: Attrs(rec.Attrs)}
	if len(rec.Private) > 0 {
		parent := t.storage
		if rec.Parent == "public" {
			if t.public == nil {
				t.readPublicLocked() // made by another process since we read the record
			}
			if t.public != nil {
				parent = t.public
			}
		}
		if rec.Parent == tss2ParentName {
			parent = tss2Parent // keyfile.go
		}
		if p := migratedParent(rec.Parent); p != nil {
			parent = p // migrate.go
		}
		blob := &tpm.Loadable{
			ID: "key:" + rec.UID, Parent: parent,
			Public:  tpm2.BytesAs2B[tpm2.TPMTPublic](rec.Public),
			Private: tpm2.TPM2BPrivate{Buffer: rec.Private},
		}
		if rec.Sealed != nil {
			blob.ID = "data:" + rec.UID
			o.seal, o.sealed = blob, rec.Sealed
		} else {
			o.key = blob
			blob.Policy = policyOf(o.Attrs) // pcrpolicy.go
			o.keyAuth = rec.Auth
			blob.Auth = t.openKeyAuth(o) // migrate.go: nil until the user logs in
		}
	}
	return o
}

func (o *Object) record() *store.Object {
	r := &store.Object{UID: o.UID, Attrs: map[ck.AttributeType][]byte(o.Attrs),
		Attributes: store.Typed(o.Attrs, func(t ck.AttributeType) store.Kind { return attrKind(o.Attrs, t) })}
	if o.key != nil {
		r.Public, r.Private = o.key.Public.Bytes(), o.key.Private.Buffer
		if isPublicParent(o.key) {
			r.Parent = "public"
		}
		if o.key.Parent == tss2Parent {
			r.Parent = tss2ParentName
		}
		if isMigratedParent(o.key.Parent) {
			r.Parent, r.Auth = o.key.Parent.ID, o.keyAuth
		}
	}
	if o.seal != nil {
		r.Public, r.Private, r.Sealed = o.seal.Public.Bytes(), o.seal.Private.Buffer, o.sealed
	}
	return r
}

// add makes o visible: token objects are written to the store first.
func (t *Token) add(o *Object) error {
	if _, clear := o.Attrs[ck.CKA_VALUE]; clear && o.session == 0 && o.class() == ck.CKO_SECRET_KEY {
		return ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a key whose value is readable cannot be a token object")
	}
	if o.session == 0 {
		if err := t.protect(o); err != nil {
			return err
		}
		if err := t.objs.Put(o.record()); err != nil {
			return storeErr(ck.CKR_DEVICE_ERROR, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalidate()
	o.Handle = t.handleFor(o.UID)
	t.objects[o.Handle] = o
	t.byUID[o.UID] = o.Handle
	return nil
}

// mayMake checks that session s may make objects with attributes as:
// token objects need a R/W session, private ones the user logged in.
func (s *Session) mayMake(as ...Attrs) error {
	for _, a := range as {
		if a.Bool(ck.CKA_TOKEN) && !s.rw() {
			return ck.E(ck.CKR_SESSION_READ_ONLY)
		}
	}
	for _, a := range as {
		if a.Bool(ck.CKA_PRIVATE) && !s.tok.userLoggedIn() {
			return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
		}
	}
	return nil
}

// visible reports whether the application may see o now.
func (t *Token) visible(o *Object) bool {
	return !o.private() || (t.isLogged && t.loggedIn == ck.CKU_USER)
}

// object returns the visible object with handle h.
func (t *Token) object(h uint64) (*Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.objects[h]
	if o == nil {
		// Handles come from identities in the store: one we do not know
		// may be of an object this process has not read yet (made by
		// another process, or known to the caller from before
		// C_Initialize). Read the store once and look again.
		if err := t.refresh(); err != nil {
			return nil, err
		}
		if o = t.objects[h]; o == nil {
			return nil, ck.E(ck.CKR_OBJECT_HANDLE_INVALID)
		}
	}
	if !t.visible(o) {
		return nil, ck.E(ck.CKR_OBJECT_HANDLE_INVALID)
	}
	return o, nil
}

// destroy removes o from the store (token objects) and the handle table.
func (t *Token) destroy(o *Object) error {
	if o.session == 0 {
		if err := t.objs.Delete(o.UID); err != nil {
			return storeErr(ck.CKR_DEVICE_ERROR, err)
		}
	}
	t.mu.Lock()
	t.invalidate()
	delete(t.objects, o.Handle)
	delete(t.byUID, o.UID)
	t.mu.Unlock()
	for _, blob := range []*tpm.Loadable{o.key, o.seal} {
		if blob != nil {
			id := blob.ID
			_, _ = t.lib.run(0, func(e *tpm.Engine) (any, error) { e.Forget(id); return nil, nil })
		}
	}
	return nil
}

// dropSessionObjects destroys the session objects owned by session h.
func (t *Token) dropSessionObjects(h uint64) {
	t.mu.Lock()
	var gone []*Object
	for _, o := range t.objects {
		if o.session == h {
			gone = append(gone, o)
		}
	}
	t.mu.Unlock()
	for _, o := range gone {
		_ = t.destroy(o)
	}
}

// find returns handles of visible objects matching tmpl.
func (t *Token) find(tmpl []Attr) ([]uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refresh(); err != nil {
		return nil, err
	}
	var out []uint64
	if hs, ok := t.candidates(tmpl); ok {
		for _, h := range hs {
			if o := t.objects[h]; o != nil && t.visible(o) && o.Attrs.Matches(tmpl) {
				out = append(out, h)
			}
		}
	} else {
		for h, o := range t.objects {
			if t.visible(o) && o.Attrs.Matches(tmpl) {
				out = append(out, h)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// getAttributes answers C_GetAttributeValue for o.
func getAttributes(o *Object, types []ck.AttributeType) []AttrResult {
	res := make([]AttrResult, len(types))
	for i, typ := range types {
		if hidden(o.Attrs, typ) { // schema.go
			res[i].RV = ck.CKR_ATTRIBUTE_SENSITIVE
			continue
		}
		v, ok := o.Attrs[typ]
		if !ok {
			res[i].RV = ck.CKR_ATTRIBUTE_TYPE_INVALID
			continue
		}
		res[i].Value = v
	}
	return res
}

// sessionObject returns session h and the object obj visible to it.
func (l *Library) sessionObject(h, obj uint64) (*Session, *Object, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, err
	}
	o, err := s.tok.object(obj)
	if err != nil {
		return nil, nil, err
	}
	return s, o, nil
}

// changeableObject is sessionObject for a change gated by flag
// (CKA_MODIFIABLE, CKA_DESTROYABLE): token objects need a R/W session.
func (l *Library) changeableObject(h, obj uint64, flag ck.AttributeType) (*Session, *Object, error) {
	s, o, err := l.sessionObject(h, obj)
	if err != nil {
		return nil, nil, err
	}
	if o.session == 0 && !s.rw() {
		return nil, nil, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if len(o.Attrs[flag]) == 1 && !o.Attrs.Bool(flag) {
		return nil, nil, ck.E(ck.CKR_ACTION_PROHIBITED)
	}
	return s, o, nil
}
