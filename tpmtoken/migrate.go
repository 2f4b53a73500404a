package tpmtoken

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
	"github.com/tpm11/tpm11/tpmtoken/tpm2pkcs11"
)

// Keys taken over from tpm2-pkcs11. Such a key cannot move: tpm2-pkcs11
// makes keys fixedTPM and fixedParent under its own primary key, so the
// token keeps the very same TPM object, loaded under that primary (a
// persistent key, 0x81000001 by default), with the key's own authValue,
// which tpm2-pkcs11 keeps wrapped under its user PIN.
//
// The authValue is recovered once, at migration, with the tpm2-pkcs11 user
// PIN (the TPM unseals tpm2-pkcs11's wrapping key), and kept in the store
// encrypted with AES-256-GCM under a key derived from the token's storage
// secret: the value the TPM unseals only for the tpm11 user PIN. So, as
// before, a key is usable only by its user after login, and a copy of the
// store is useless without the PIN and the TPM. The key is CKA_PRIVATE
// and needs the user logged in; keyAuthKey is held while the user is.

// migratedPrefix starts the store's Parent of a migrated key:
// "tpm2-pkcs11:HANDLE:TPMT_PUBLIC", the primary's persistent handle and
// its public area (unique field empty: the template, which makes the same
// key again if the persistent one is gone).
const migratedPrefix = "tpm2-pkcs11:"

var migratedParents sync.Map // spec -> *tpm.Loadable, shared: the Engine caches parents by ID

// migratedParent is the primary named by a store Parent, nil if spec names
// none.
func migratedParent(spec string) *tpm.Loadable {
	if !strings.HasPrefix(spec, migratedPrefix) {
		return nil
	}
	if p, ok := migratedParents.Load(spec); ok {
		return p.(*tpm.Loadable)
	}
	f := strings.SplitN(strings.TrimPrefix(spec, migratedPrefix), ":", 2)
	if len(f) != 2 {
		return nil
	}
	h, err := strconv.ParseUint(f[0], 16, 32)
	pub, err2 := hex.DecodeString(f[1])
	if err != nil || err2 != nil {
		return nil
	}
	p := &tpm.Loadable{ID: spec, Persistent: tpm2.TPMHandle(h), Public: tpm2.BytesAs2B[tpm2.TPMTPublic](pub)}
	v, _ := migratedParents.LoadOrStore(spec, p)
	return v.(*tpm.Loadable)
}

func isMigratedParent(p *tpm.Loadable) bool {
	return p != nil && strings.HasPrefix(p.ID, migratedPrefix)
}

// primarySpec makes the Parent of keys under tpm2-pkcs11 primary p.
func primarySpec(p *tpm2pkcs11.Primary) (string, error) {
	if p.Handle == 0 {
		return "", fmt.Errorf("its primary key is transient (template %q): only a persistent primary (tpm2_ptool init's default) is supported", p.Template)
	}
	if p.Auth != "" {
		return "", errors.New("its primary key has a password (tpm2_ptool init --primary-auth): not supported")
	}
	b, err := unsized(p.Public)
	if err != nil {
		return "", fmt.Errorf("primary key: %w", err)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return "", fmt.Errorf("primary key: %w", err)
	}
	// The template: the key's public area with its unique field empty.
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	case tpm2.TPMAlgECC:
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	default:
		return "", fmt.Errorf("primary key of TPM type %#x", pub.Type)
	}
	return fmt.Sprintf("%s%08x:%x", migratedPrefix, p.Handle, tpm2.Marshal(pub)), nil
}

var keyAuthLabel = []byte("tpm11 migrated key authValue v1")

// keyAuthKey derives the key that encrypts migrated keys' authValues from
// the token's storage secret.
func keyAuthKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(keyAuthLabel)
	return m.Sum(nil)
}

// sealKeyAuth encrypts key object uid's authValue.
func sealKeyAuth(key []byte, uid string, auth []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := randBytes(g.NonceSize())
	return g.Seal(nonce, nonce, auth, append(bytes.Clone(keyAuthLabel), uid...)), nil
}

// openKeyAuth is o's authValue, nil if o has none or the user is not
// logged in. Callers hold t.mu.
func (t *Token) openKeyAuth(o *Object) []byte {
	if len(o.keyAuth) == 0 || t.authKey == nil {
		return nil
	}
	g, err := gcm(t.authKey)
	if err != nil || len(o.keyAuth) < g.NonceSize() {
		return nil
	}
	n := g.NonceSize()
	auth, err := g.Open(nil, o.keyAuth[:n], o.keyAuth[n:], append(bytes.Clone(keyAuthLabel), o.UID...))
	if err != nil {
		t.lib.log.Error("a migrated key's authValue does not decrypt", "uid", o.UID)
		return nil
	}
	return auth
}

// unlockKeyAuths, at user login, gives the migrated keys their authValues.
// Loadable.Auth is read by the TPM worker only: it is set there.
func (t *Token) unlockKeyAuths(key []byte) {
	type set struct {
		k    *tpm.Loadable
		auth []byte
	}
	var sets []set
	t.mu.Lock()
	t.authKey = key
	for _, o := range t.objects {
		if o.key != nil && len(o.keyAuth) > 0 {
			if a := t.openKeyAuth(o); a != nil {
				sets = append(sets, set{o.key, a})
			}
		}
	}
	t.mu.Unlock()
	if len(sets) == 0 {
		return
	}
	_, _ = t.lib.run(0, func(*tpm.Engine) (any, error) {
		for _, s := range sets {
			s.k.Auth = s.auth
		}
		return nil, nil
	})
}

// lockKeyAuths, at logout, forgets the key and returns the migrated keys,
// whose authValues the caller wipes on the worker.
func (t *Token) lockKeyAuths() []*tpm.Loadable {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.authKey)
	t.authKey = nil
	var out []*tpm.Loadable
	for _, o := range t.objects {
		if o.key != nil && len(o.keyAuth) > 0 {
			out = append(out, o.key)
		}
	}
	return out
}

// Migration says what MigrateTPM2PKCS11 did.
type Migration struct {
	// Keys, Certificates and Data describe the objects made.
	Keys, Certificates, Data []string
	// Skipped describes each object not taken over, and why.
	Skipped []string
}

// migrated is one object ready to be written.
type migratedKey struct {
	desc     string
	kt       ck.KeyType
	ecParams []byte
	key      *tpm.Loadable
	auth     []byte
	tmpl     Template
}

// MigrateTPM2PKCS11 takes over tpm2-pkcs11 token from (its user PIN pin)
// into the token of session h (R/W, user logged in): each RSA and EC key
// pair becomes a tpm11 key pair on the same TPM object, with its label and
// ID; certificates and data objects are copied. Nothing is written unless
// every key's authorization was recovered and proven in the TPM: a wrong
// PIN changes nothing. The tpm2-pkcs11 store is only read.
func (l *Library) MigrateTPM2PKCS11(h uint64, from *tpm2pkcs11.Token, pin []byte) (*Migration, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, err
	}
	if !s.rw() {
		return nil, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	if !s.tok.userLoggedIn() {
		return nil, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	if from.UserPub == nil {
		return nil, ck.Errorf(ck.CKR_USER_PIN_NOT_INITIALIZED, "tpm2-pkcs11 token %q has no user PIN", from.Label)
	}
	spec, err := primarySpec(from.Primary)
	if err != nil {
		return nil, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "tpm2-pkcs11 token %q: %v", from.Label, err)
	}
	primary := migratedParent(spec)
	sealPub, err1 := unsized(from.UserPub)
	sealPriv, err2 := unsized(from.UserPriv)
	if err1 != nil || err2 != nil {
		return nil, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "tpm2-pkcs11 token %q: its sealed user object is damaged", from.Label)
	}
	seal := &tpm.Loadable{ID: "tpm2-pkcs11-seal:" + newUID(), Parent: primary,
		Public: tpm2.BytesAs2B[tpm2.TPMTPublic](sealPub), Private: tpm2.TPM2BPrivate{Buffer: sealPriv}, Auth: from.SealAuth(pin)}
	wrapping, err := do(l, h, func(e *tpm.Engine) ([]byte, error) {
		defer e.Forget(seal.ID)
		return e.Unseal(seal)
	})
	if err != nil {
		if ck.ToRV(err) == ck.CKR_PIN_INCORRECT {
			return nil, ck.Errorf(ck.CKR_PIN_INCORRECT, "the tpm2-pkcs11 user PIN of token %q is wrong (nothing was changed)", from.Label)
		}
		return nil, fmt.Errorf("unsealing tpm2-pkcs11 token %q's wrapping key under its primary %s: %w", from.Label, spec[:len(migratedPrefix)+8], err)
	}
	defer clear(wrapping)

	m := &Migration{}
	var keys []*migratedKey
	var others [][]Attr
	var otherDesc []string
	publics := map[string]bool{} // label/ID of the public halves of migrated keys
	for _, o := range from.Objects {
		class, _ := o.ULong(uint64(ck.CKA_CLASS))
		label, _ := o.Bytes(uint64(ck.CKA_LABEL))
		id, _ := o.Bytes(uint64(ck.CKA_ID))
		desc := fmt.Sprintf("%s %q id %x", className(ck.ObjectClass(class)), label, id)
		switch ck.ObjectClass(class) {
		case ck.CKO_PRIVATE_KEY:
			k, err := migrateKey(o, primary, wrapping, label, id)
			if err != nil {
				m.Skipped = append(m.Skipped, fmt.Sprintf("%s: %v", desc, err))
				continue
			}
			k.desc = desc
			keys = append(keys, k)
			publics[string(label)+"\x00"+string(id)] = true
		case ck.CKO_PUBLIC_KEY, ck.CKO_CERTIFICATE, ck.CKO_DATA:
			others = append(others, copyAttrs(o, ck.ObjectClass(class)))
			otherDesc = append(otherDesc, desc)
		default:
			m.Skipped = append(m.Skipped, fmt.Sprintf("%s: objects of this class (%#x, e.g. AES and HMAC keys) are not taken over", desc, class))
		}
	}
	// Prove each key's authorization in the TPM before writing anything.
	for _, k := range keys {
		_, err := do(l, h, func(e *tpm.Engine) (struct{}, error) {
			probe := *k.key
			probe.ID = "tpm2-pkcs11-probe:" + newUID()
			probe.Auth = k.auth
			defer e.Forget(probe.ID)
			_, err := e.ChangeAuth(&probe, k.auth)
			return struct{}{}, err
		})
		if err != nil {
			return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "%s: the TPM refuses the key or its recovered authorization (nothing was changed): %v", k.desc, err)
		}
	}
	// IDs must stay unique in the token.
	for _, k := range keys {
		if id := k.tmpl[ck.CKA_ID]; len(id) > 0 {
			if hs := s.tok.withID(id); len(hs) > 0 {
				return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "%s: the ID %x is already used in this token (nothing was changed): delete or rename those objects first", k.desc, id)
			}
		}
	}
	var made []uint64
	undo := func() {
		for _, h2 := range made {
			_ = l.DestroyObject(h, h2)
		}
	}
	for _, k := range keys {
		pubH, privH, err := l.addMigratedKey(s, k)
		if err != nil {
			undo()
			return nil, fmt.Errorf("%s: %w (nothing was changed)", k.desc, err)
		}
		made = append(made, pubH, privH)
		m.Keys = append(m.Keys, k.desc)
	}
	for i, tmpl := range others {
		a := Attrs{}
		for _, x := range tmpl {
			a[x.Type] = x.Value
		}
		c, _ := a.ULong(ck.CKA_CLASS)
		if ck.ObjectClass(c) == ck.CKO_PUBLIC_KEY && publics[string(a[ck.CKA_LABEL])+"\x00"+string(a[ck.CKA_ID])] {
			continue // made from the TPM's public area with its private key
		}
		oh, err := l.CreateObject(h, tmpl)
		if err != nil {
			m.Skipped = append(m.Skipped, fmt.Sprintf("%s: %v", otherDesc[i], err))
			continue
		}
		made = append(made, oh)
		switch ck.ObjectClass(c) {
		case ck.CKO_CERTIFICATE:
			m.Certificates = append(m.Certificates, otherDesc[i])
		default:
			m.Data = append(m.Data, otherDesc[i])
		}
	}
	return m, nil
}

func className(c ck.ObjectClass) string {
	switch c {
	case ck.CKO_DATA:
		return "data object"
	case ck.CKO_CERTIFICATE:
		return "certificate"
	case ck.CKO_PUBLIC_KEY:
		return "public key"
	case ck.CKO_PRIVATE_KEY:
		return "private key"
	case ck.CKO_SECRET_KEY:
		return "secret key"
	}
	return fmt.Sprintf("object of class %#x", uint64(c))
}

// withID lists the token objects with CKA_ID id.
func (t *Token) withID(id []byte) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.refresh()
	var out []uint64
	for h, o := range t.objects {
		if o.session == 0 && bytes.Equal(o.Attrs[ck.CKA_ID], id) {
			out = append(out, h)
		}
	}
	return out
}

// migrateKey reads private key object o: its TPM blobs and authValue.
func migrateKey(o *tpm2pkcs11.Object, primary *tpm.Loadable, wrapping, label, id []byte) (*migratedKey, error) {
	pubB, ok1 := o.Bytes(tpm2pkcs11.CKA_TPM2_PUB_BLOB)
	privB, ok2 := o.Bytes(tpm2pkcs11.CKA_TPM2_PRIV_BLOB)
	if !ok1 || !ok2 {
		return nil, errors.New("it has no TPM blobs (not a key in the TPM)")
	}
	pub, err1 := unsized(pubB)
	priv, err2 := unsized(privB)
	if err1 != nil || err2 != nil {
		return nil, errors.New("its TPM blobs are damaged")
	}
	auth, err := o.Auth(wrapping)
	if err != nil {
		return nil, err
	}
	k := &migratedKey{
		key:  &tpm.Loadable{Parent: primary, Public: tpm2.BytesAs2B[tpm2.TPMTPublic](pub), Private: tpm2.TPM2BPrivate{Buffer: priv}},
		auth: auth, tmpl: Template{},
	}
	tp, err := k.key.Public.Contents()
	if err != nil {
		return nil, fmt.Errorf("its public area: %v", err)
	}
	switch tp.Type {
	case tpm2.TPMAlgRSA:
		k.kt = ck.CKK_RSA
	case tpm2.TPMAlgECC:
		k.kt = ck.CKK_EC
		d, err := tp.Parameters.ECCDetail()
		if err != nil {
			return nil, err
		}
		c := mech.CurveOfTPM(d.CurveID)
		if c == nil {
			return nil, fmt.Errorf("curve %#x is not supported", d.CurveID)
		}
		k.ecParams = c.Params
	default:
		return nil, fmt.Errorf("a key of TPM type %#x, not RSA or ECC", tp.Type)
	}
	if a := tp.ObjectAttributes; a.Restricted || !a.UserWithAuth {
		return nil, errors.New("a restricted or policy-only key cannot be used through PKCS#11")
	}
	k.tmpl[ck.CKA_LABEL], k.tmpl[ck.CKA_ID] = label, id
	return k, nil
}

// addMigratedKey makes the key pair of k in s's token: attributes from
// what the TPM object allows, as for a linked key file (keyfile.go), but
// CKA_PRIVATE and with k's authValue, sealed.
func (l *Library) addMigratedKey(s *Session, k *migratedKey) (uint64, uint64, error) {
	tp, _ := k.key.Public.Contents()
	a := tp.ObjectAttributes
	// What the TPM object allows, as for a linked key file (keyfile.go),
	// but private: its authValue is sealed under the user PIN.
	pubOpts, privOpts := linkedUses(k.kt, a)
	privOpts.defaults[ck.CKA_PRIVATE] = vTrue
	pubA, privA, err := keyPairAttrs(opLink, k.kt, k.tmpl, k.tmpl, pubOpts, privOpts)
	if err != nil {
		return 0, 0, err
	}
	spki, err := publicAttrs(k.key, k.kt, k.ecParams, pubA, privA)
	if err != nil {
		return 0, 0, err
	}
	for _, x := range []Attrs{pubA, privA} {
		x.setOrigin(false, 0, a.SensitiveDataOrigin && a.FixedTPM, a.FixedTPM && a.FixedParent)
		x[ck.CKA_PUBLIC_KEY_INFO] = spki
	}
	pubObj := &Object{UID: newUID(), Attrs: pubA}
	privObj := &Object{UID: newUID(), Attrs: privA}
	s.tok.mu.Lock()
	authKey := bytes.Clone(s.tok.authKey)
	s.tok.mu.Unlock()
	if authKey == nil {
		return 0, 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	defer clear(authKey)
	sealed, err := sealKeyAuth(authKey, privObj.UID, k.auth)
	if err != nil {
		return 0, 0, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	key := *k.key
	key.ID, key.Auth = "key:"+privObj.UID, bytes.Clone(k.auth)
	privObj.key, privObj.keyAuth = &key, sealed
	for _, o := range []*Object{pubObj, privObj} {
		o.Attrs[ck.CKA_UNIQUE_ID] = []byte(o.UID)
	}
	if err := s.tok.add(privObj); err != nil {
		return 0, 0, err
	}
	if err := s.tok.add(pubObj); err != nil {
		_ = s.tok.destroy(privObj)
		return 0, 0, err
	}
	return pubObj.Handle, privObj.Handle, nil
}

// copyAttrs is the template that recreates a public key, certificate or
// data object: its standard attributes, no vendor ones.
func copyAttrs(o *tpm2pkcs11.Object, class ck.ObjectClass) []Attr {
	t := []Attr{{ck.CKA_CLASS, ulong(uint64(class))}, {ck.CKA_TOKEN, []byte{1}}}
	private, _ := o.Bool(uint64(ck.CKA_PRIVATE))
	t = append(t, Attr{ck.CKA_PRIVATE, boolByte(private)})
	var want []ck.AttributeType
	switch class {
	case ck.CKO_CERTIFICATE:
		want = []ck.AttributeType{ck.CKA_LABEL, ck.CKA_ID, ck.CKA_VALUE, ck.CKA_CERTIFICATE_TYPE, ck.CKA_SUBJECT, ck.CKA_ISSUER, ck.CKA_SERIAL_NUMBER}
	case ck.CKO_DATA:
		want = []ck.AttributeType{ck.CKA_LABEL, ck.CKA_VALUE, ck.CKA_APPLICATION, ck.CKA_OBJECT_ID}
	case ck.CKO_PUBLIC_KEY:
		want = []ck.AttributeType{ck.CKA_LABEL, ck.CKA_ID, ck.CKA_KEY_TYPE, ck.CKA_MODULUS, ck.CKA_PUBLIC_EXPONENT, ck.CKA_EC_PARAMS, ck.CKA_EC_POINT}
	}
	for _, typ := range want {
		switch typ {
		case ck.CKA_CERTIFICATE_TYPE, ck.CKA_KEY_TYPE:
			if v, ok := o.ULong(uint64(typ)); ok {
				t = append(t, Attr{typ, ulong(v)})
			}
		default:
			if v, ok := o.Bytes(uint64(typ)); ok && (len(v) > 0 || typ == ck.CKA_LABEL || typ == ck.CKA_VALUE) {
				t = append(t, Attr{typ, v})
			}
		}
	}
	return t
}

func ulong(v uint64) []byte {
	a := Attrs{}
	a.SetULong(0, v)
	return a[0]
}

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}
