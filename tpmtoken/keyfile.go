package tpmtoken

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Existing TPM keys: "TSS2 PRIVATE KEY" files, the format of tpm2-openssl
// and the tpm2-tss engine (ASN.1 TPMKey: type, emptyAuth, parent, the
// TPM2B_PUBLIC and TPM2B_PRIVATE blobs). LinkKeyFile makes such a key a
// token object, so PKCS#11 clients use it; ExportKeyFile writes a token key
// as such a file where its parent is one those tools load by themselves:
// the owner hierarchy's storage primary (tpm.TSS2OwnerParent).
//
// The format is parsed and written with encoding/asn1: the maintained Go
// library for it (github.com/foxboron/go-tpm-keyfiles) requires a go-tpm
// newer than the v0.9.8 the module is pinned to.

// CKA_TPM11_PORTABLE (CK_BBOOL, CKA_VENDOR_DEFINED|0x54504D05) in a
// private key's template at generation makes the key a child of the
// owner's storage primary instead of the token's storage key: it can be
// exported as a TSS2 key file for tpm2-openssl, and, like the file,
// needs no PIN (CKA_PRIVATE must be false). Read back from linked and
// portable keys.
const CKA_TPM11_PORTABLE = ck.AttributeType(0x80000000 | 0x54504D05)

var (
	oidLoadableKey = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}
	// tss2Parent is shared by every library: the Engine caches a key's
	// parent by identity.
	tss2Parent = tpm.TSS2OwnerParent()
)

const tss2ParentName = "tss2-owner" // store.Object.Parent

// tss2Key is TPMKey as files have it; optional parts are kept raw (their
// BOOLEANs are BER: tpm2-openssl writes TRUE as 0x01, which Go's DER
// decoder refuses).
type tss2Key struct {
	Type        asn1.ObjectIdentifier
	EmptyAuth   asn1.RawValue `asn1:"optional,explicit,tag:0"`
	Policy      asn1.RawValue `asn1:"optional,explicit,tag:1"`
	Secret      asn1.RawValue `asn1:"optional,explicit,tag:2"`
	AuthPolicy  asn1.RawValue `asn1:"optional,explicit,tag:3"`
	Description asn1.RawValue `asn1:"optional,explicit,tag:4"`
	RSAParent   asn1.RawValue `asn1:"optional,explicit,tag:5"`
	Parent      int64
	Pubkey      []byte
	Privkey     []byte
}

// rawTrue reads an explicit [n] BOOLEAN kept raw: absent is false.
func rawTrue(v asn1.RawValue) bool {
	var b asn1.RawValue
	if len(v.Bytes) == 0 {
		return false
	}
	if _, err := asn1.Unmarshal(v.Bytes, &b); err != nil || b.Tag != asn1.TagBoolean || len(b.Bytes) != 1 {
		return false
	}
	return b.Bytes[0] != 0
}

// KeyFile is a parsed TSS2 PRIVATE KEY.
type KeyFile struct {
	Public    tpm2.TPM2BPublic
	Private   tpm2.TPM2BPrivate
	Parent    uint32
	EmptyAuth bool
}

// ParseKeyFile reads a "TSS2 PRIVATE KEY" PEM. Only loadable keys under
// the owner hierarchy's storage primary, with no policy and no password,
// can be linked: refused otherwise, saying why.
func ParseKeyFile(b []byte) (*KeyFile, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "TSS2 PRIVATE KEY" {
		return nil, errors.New("not a TSS2 PRIVATE KEY PEM file")
	}
	var k tss2Key
	if rest, err := asn1.Unmarshal(blk.Bytes, &k); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("TSS2 key file: %v", err)
	}
	switch {
	case !k.Type.Equal(oidLoadableKey):
		return nil, fmt.Errorf("TSS2 key file: type %v is not a loadable key (importable and sealed keys are not supported)", k.Type)
	case len(k.Policy.FullBytes) > 0 || len(k.AuthPolicy.FullBytes) > 0 || len(k.Secret.FullBytes) > 0:
		return nil, errors.New("TSS2 key file: keys with policies or secrets are not supported")
	case rawTrue(k.RSAParent):
		return nil, errors.New("TSS2 key file: an RSA parent is not supported (only the owner's ECC P-256 storage primary)")
	case uint32(k.Parent) != uint32(tpm2.TPMRHOwner):
		return nil, fmt.Errorf("TSS2 key file: parent %#x: only the owner hierarchy's primary (0x40000001) is supported", k.Parent)
	}
	pub, err := unsized(k.Pubkey)
	if err != nil {
		return nil, fmt.Errorf("TSS2 key file: public part: %w", err)
	}
	priv, err := unsized(k.Privkey)
	if err != nil {
		return nil, fmt.Errorf("TSS2 key file: private part: %w", err)
	}
	kf := &KeyFile{Public: tpm2.BytesAs2B[tpm2.TPMTPublic](pub), Private: tpm2.TPM2BPrivate{Buffer: priv},
		Parent: uint32(k.Parent), EmptyAuth: rawTrue(k.EmptyAuth)}
	if _, err := kf.Public.Contents(); err != nil {
		return nil, fmt.Errorf("TSS2 key file: public area: %w", err)
	}
	return kf, nil
}

// unsized strips a TPM2B's 16-bit size.
func unsized(b []byte) ([]byte, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, errors.New("bad TPM2B size")
	}
	return b[2:], nil
}

func sized(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }

// PEM writes the key file (emptyAuth TRUE, DER).
func (kf *KeyFile) PEM() ([]byte, error) {
	var body []byte
	for _, v := range []any{oidLoadableKey} {
		b, err := asn1.Marshal(v)
		if err != nil {
			return nil, err
		}
		body = append(body, b...)
	}
	if kf.EmptyAuth {
		body = append(body, 0xa0, 0x03, 0x01, 0x01, 0xff)
	}
	for _, v := range []any{int64(kf.Parent), sized(kf.Public.Bytes()), sized(kf.Private.Buffer)} {
		b, err := asn1.Marshal(v)
		if err != nil {
			return nil, err
		}
		body = append(body, b...)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: seq}), nil
}

// portableParent applies CKA_TPM11_PORTABLE at generation (keygen.go):
// the owner's storage primary instead of storage.
func portableParent(vt Template, priv Attrs, storage *tpm.Loadable, err error) (*tpm.Loadable, error) {
	portable, ok, terr := vt.Bool(CKA_TPM11_PORTABLE)
	if terr != nil {
		return nil, terr
	}
	if !ok {
		return storage, err
	}
	priv.SetBool(CKA_TPM11_PORTABLE, portable)
	if !portable {
		return storage, err
	}
	if priv.Bool(ck.CKA_PRIVATE) {
		return nil, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a portable key is loadable by anyone holding its file: it cannot be CKA_PRIVATE")
	}
	return tss2Parent, nil
}

// LinkKeyFile makes the key of a TSS2 PRIVATE KEY file (tpm2-openssl,
// tpm2-tss engine) a token key pair (session h, R/W): the TPM loads it
// under the owner's storage primary, as those tools do. tmpl may set
// CKA_ID, CKA_LABEL and the usages the key has. Such a key needs no PIN
// (anyone with the file can load it): CKA_PRIVATE is false; CKA_LOCAL is
// false (not made by the token), CKA_TPM11_PORTABLE true.
func (l *Library) LinkKeyFile(h uint64, file []byte, tmpl []Attr) (uint64, uint64, error) {
	s, err := l.session(h)
	if err != nil {
		return 0, 0, err
	}
	if !s.rw() {
		return 0, 0, ck.E(ck.CKR_SESSION_READ_ONLY)
	}
	kf, err := ParseKeyFile(file)
	if err != nil {
		return 0, 0, ck.Wrap(ck.CKR_ARGUMENTS_BAD, err)
	}
	kt, ecParams, ta, err := linkableKey(kf)
	if err != nil {
		return 0, 0, err
	}
	t, err := NewTemplate(tmpl)
	if err != nil {
		return 0, 0, err
	}
	if p, _, _ := t.Bool(ck.CKA_PRIVATE); p {
		return 0, 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "a linked key is loadable by anyone holding its file: it cannot be CKA_PRIVATE")
	}
	// The public half takes the name and identity; the key can do what
	// its TPM attributes allow.
	pubT := Template{}
	for _, typ := range []ck.AttributeType{ck.CKA_ID, ck.CKA_LABEL} {
		if v, ok := t[typ]; ok {
			pubT[typ] = v
		}
	}
	pubOpts, privOpts := linkedUses(kt, ta)
	privOpts.defaults[CKA_TPM11_PORTABLE] = vTrue // its file loads it anywhere this TPM is
	pubA, privA, err := keyPairAttrs(opLink, kt, pubT, t, pubOpts, privOpts)
	if err != nil {
		return 0, 0, err
	}
	key := &tpm.Loadable{Parent: tss2Parent, Public: kf.Public, Private: kf.Private}
	if err := l.probeLoad(s, key); err != nil {
		return 0, 0, err
	}
	org := keyOrigin{alwaysSensitive: ta.SensitiveDataOrigin && ta.FixedTPM, neverExtractable: ta.FixedTPM && ta.FixedParent}
	return s.tok.addKeyPair(key, kt, ecParams, pubA, privA, org, 0)
}

// linkableKey checks that a key file's key can serve PKCS#11: its type
// (and curve), and TPM attributes that let a password (here: none) use it.
func linkableKey(kf *KeyFile) (ck.KeyType, []byte, tpm2.TPMAObject, error) {
	if !kf.EmptyAuth {
		return 0, nil, tpm2.TPMAObject{}, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "the key has a password: only keys made without one (emptyAuth) can be linked")
	}
	pub, _ := kf.Public.Contents()
	a := pub.ObjectAttributes
	if a.Restricted || !a.UserWithAuth {
		return 0, nil, a, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "a restricted or policy-only key cannot be used through PKCS#11")
	}
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		return ck.CKK_RSA, nil, a, nil
	case tpm2.TPMAlgECC:
		d, err := pub.Parameters.ECCDetail()
		if err != nil {
			return 0, nil, a, ck.Wrap(ck.CKR_ARGUMENTS_BAD, err)
		}
		c := mech.CurveOfTPM(d.CurveID)
		if c == nil {
			return 0, nil, a, ck.Errorf(ck.CKR_CURVE_NOT_SUPPORTED, "curve %#x", d.CurveID)
		}
		return ck.CKK_EC, c.Params, a, nil
	}
	return 0, nil, a, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "the key file holds a key of TPM type %#x, not RSA or ECC", pub.Type)
}

// linkedUses are a linked key's defaults over its schema's: a token
// object, not private, that signs and decrypts as its TPM attributes say
// (and never what they do not).
func linkedUses(kt ck.KeyType, a tpm2.TPMAObject) (pub, priv buildOpts) {
	decrypts := a.Decrypt && kt == ck.CKK_RSA
	pub.defaults = Attrs{ck.CKA_TOKEN: vTrue, ck.CKA_PRIVATE: vFalse, ck.CKA_VERIFY: boolBytes(a.SignEncrypt), ck.CKA_ENCRYPT: boolBytes(decrypts)}
	priv.defaults = Attrs{ck.CKA_TOKEN: vTrue, ck.CKA_PRIVATE: vFalse, ck.CKA_SIGN: boolBytes(a.SignEncrypt), ck.CKA_DECRYPT: boolBytes(decrypts)}
	if !a.SignEncrypt {
		priv.cannot = append(priv.cannot, ck.CKA_SIGN)
	}
	if !a.Decrypt { // TPM2_RSA_Decrypt and TPM2_ECDH_ZGen need it
		priv.cannot = append(priv.cannot, ck.CKA_DECRYPT, ck.CKA_DECAPSULATE)
	}
	return pub, priv
}

// probeLoad has the TPM load key once: it checks the blob is this TPM's,
// under that parent.
func (l *Library) probeLoad(s *Session, key *tpm.Loadable) error {
	probe := &tpm.Loadable{ID: "link:" + newUID(), Parent: key.Parent, Public: key.Public, Private: key.Private}
	if _, err := do(l, s.Handle, func(e *tpm.Engine) (struct{}, error) {
		_, err := e.Handle(probe)
		e.Forget(probe.ID)
		return struct{}{}, err
	}); err != nil {
		return ck.Errorf(ck.CKR_ARGUMENTS_BAD, "the TPM does not load this key (another TPM's, or another parent): %v", err)
	}
	return nil
}

// ExportKeyFile writes private key obj (session h) as a TSS2 PRIVATE KEY
// file, for tpm2-openssl and the tpm2-tss engine: only a key whose parent
// those tools load themselves (a linked key, or one generated with
// CKA_TPM11_PORTABLE). The file holds the TPM-wrapped blobs only; the key
// never leaves the TPM. Any other key's parent is the token's storage
// key, which only the token can load: CKR_KEY_UNEXTRACTABLE.
func (l *Library) ExportKeyFile(h, obj uint64) ([]byte, error) {
	_, o, err := l.sessionObject(h, obj)
	if err != nil {
		return nil, err
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.key == nil {
		return nil, ck.Errorf(ck.CKR_KEY_TYPE_INCONSISTENT, "only a private key in the TPM has a key file")
	}
	if o.key.Parent != tss2Parent {
		return nil, ck.Errorf(ck.CKR_KEY_UNEXTRACTABLE, "the key's parent is the token's storage key: generate it with CKA_TPM11_PORTABLE (tpm11 keygen --portable) to have a key file")
	}
	kf := &KeyFile{Public: o.key.Public, Private: o.key.Private, Parent: uint32(tpm2.TPMRHOwner), EmptyAuth: len(o.key.Auth) == 0}
	b, err := kf.PEM()
	if err != nil {
		return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	if !bytes.HasPrefix(b, []byte("-----BEGIN TSS2 PRIVATE KEY-----")) {
		return nil, ck.E(ck.CKR_GENERAL_ERROR)
	}
	return b, nil
}
