package tpmtoken_test

import (
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

func tmplValue(as ...tpmtoken.Attr) []byte { return tpmtoken.EncodeTemplate(as) }

// Template attributes are kept as given on every key class that has them,
// survive a restart of the library (the store's format 3), are fixed once
// the key is made, and a value that is no template of well-typed
// attributes is refused.
func TestKeyTemplatesKept(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l)
	yes := []byte{1}
	wrapT := tmplValue(tpmtoken.Attr{Type: ck.CKA_KEY_TYPE, Value: ulong(ck.CKK_AES)}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes})
	unwrapT := tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("unwrapped")}, tpmtoken.Attr{Type: ck.CKA_ENCRYPT, Value: yes})
	deriveT := tmplValue()
	kek, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE, make([]byte, 32)}, {ck.CKA_TOKEN, yes}, {ck.CKA_WRAP, yes}, {ck.CKA_LABEL, []byte("kek")},
		{ck.CKA_WRAP_TEMPLATE, wrapT}, {ck.CKA_UNWRAP_TEMPLATE, unwrapT}, {ck.CKA_DERIVE_TEMPLATE, deriveT}})
	require.NoError(t, err)
	decapT := tmplValue(tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: yes})
	encapT := tmplValue(tpmtoken.Attr{Type: ck.CKA_KEY_TYPE, Value: ulong(ck.CKK_GENERIC_SECRET)})
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}, {ck.CKA_TOKEN, yes}, {ck.CKA_ENCAPSULATE_TEMPLATE, encapT}, {ck.CKA_WRAP_TEMPLATE, wrapT}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, yes}, {ck.CKA_DERIVE, yes}, {ck.CKA_DECAPSULATE_TEMPLATE, decapT}, {ck.CKA_DERIVE_TEMPLATE, unwrapT},
			{ck.CKA_UNWRAP_TEMPLATE, deriveT}})
	require.NoError(t, err)
	want := map[uint64]map[ck.AttributeType][]byte{
		kek:  {ck.CKA_WRAP_TEMPLATE: wrapT, ck.CKA_UNWRAP_TEMPLATE: unwrapT, ck.CKA_DERIVE_TEMPLATE: deriveT},
		pub:  {ck.CKA_ENCAPSULATE_TEMPLATE: encapT, ck.CKA_WRAP_TEMPLATE: wrapT},
		priv: {ck.CKA_DECAPSULATE_TEMPLATE: decapT, ck.CKA_DERIVE_TEMPLATE: unwrapT, ck.CKA_UNWRAP_TEMPLATE: deriveT},
	}
	check := func(l *tpmtoken.Library, h uint64, handles map[uint64]uint64) {
		t.Helper()
		for o, as := range want {
			for typ, v := range as {
				res, err := l.GetAttributeValue(h, handles[o], []ck.AttributeType{typ})
				require.NoError(t, err)
				require.Equal(t, v, res[0].Value, "attribute 0x%x", typ)
			}
		}
	}
	check(l, h, map[uint64]uint64{kek: kek, pub: pub, priv: priv})

	// Fixed once made (no footnote 8 in the attribute tables).
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, kek, []tpmtoken.Attr{{ck.CKA_WRAP_TEMPLATE, tmplValue()}})))
	_, err = l.CopyObject(h, kek, []tpmtoken.Attr{{ck.CKA_UNWRAP_TEMPLATE, tmplValue()}})
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(err))
	// Not a class's attribute: a template on a data object, an unwrap
	// template on a public key.
	_, err = l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_WRAP_TEMPLATE, tmplValue()}})
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, rv(err))
	// Bad values: a CK_BBOOL of two bytes, a CK_ULONG of three, a value
	// that is no template, a template in a template.
	for _, bad := range [][]byte{
		tmplValue(tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: []byte{1, 1}}),
		tmplValue(tpmtoken.Attr{Type: ck.CKA_KEY_TYPE, Value: []byte{1, 2, 3}}),
		{1, 2, 3},
		tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("x")})[:16],
		tmplValue(tpmtoken.Attr{Type: ck.CKA_WRAP_TEMPLATE, Value: tmplValue()}),
	} {
		_, err = l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
			{ck.CKA_VALUE, make([]byte, 16)}, {ck.CKA_WRAP_TEMPLATE, bad}})
		require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err), "%x", bad)
	}

	// The store keeps them typed (format 3), and a new library reads them.
	var records []string
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if strings.HasSuffix(p, ".obj") {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			records = append(records, string(b))
		}
		return nil
	}))
	found := false
	for _, r := range records {
		if strings.Contains(r, `"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_EXTRACTABLE","bool":true},{"type":"CKA_KEY_TYPE","ulong":31}]`) ||
			strings.Contains(r, `"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_KEY_TYPE","ulong":31},{"type":"CKA_EXTRACTABLE","bool":true}]`) {
			require.Contains(t, r, `"format":3`)
			found = true
		}
	}
	require.True(t, found, "a template on disk, typed: %v", records)
	l.Close()

	l = open(t, spec, dir)
	defer l.Close()
	h, err = l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	find := func(tmpl ...tpmtoken.Attr) uint64 {
		require.NoError(t, l.FindObjectsInit(h, tmpl))
		hs, err := l.FindObjects(h, 2)
		require.NoError(t, err)
		require.NoError(t, l.FindObjectsFinal(h))
		require.Len(t, hs, 1)
		return hs[0]
	}
	check(l, h, map[uint64]uint64{
		kek:  find(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("kek")}),
		pub:  find(tpmtoken.Attr{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PUBLIC_KEY)}),
		priv: find(tpmtoken.Attr{Type: ck.CKA_CLASS, Value: ulong(ck.CKO_PRIVATE_KEY)}),
	})
}

// CKA_WRAP_TEMPLATE: a key wraps only if its attributes match the
// template (else CKR_KEY_HANDLE_INVALID, as C_WrapKey says). The wrapped
// bytes are Go's AES (crypto/aes) under RFC 3394 of the key's value.
// CKA_UNWRAP_TEMPLATE: the unwrapped key has the template's attributes
// besides the caller's; a caller's value contradicting one is
// CKR_TEMPLATE_INCONSISTENT, one agreeing is accepted. The same for the
// authenticated wrap (AES-CCM).
func TestWrapUnwrapTemplates(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	kekValue := make([]byte, 32)
	_, _ = rand.Read(kekValue)
	kek, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE, kekValue}, {ck.CKA_WRAP, yes}, {ck.CKA_UNWRAP, yes},
		{ck.CKA_WRAP_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_KEY_TYPE, Value: ulong(ck.CKK_AES)},
			tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(16)}, tpmtoken.Attr{Type: ck.CKA_ENCRYPT, Value: []byte{0xff}})},
		{ck.CKA_UNWRAP_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("from kek")},
			tpmtoken.Attr{Type: ck.CKA_DECRYPT, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes},
			tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no})}})
	require.NoError(t, err)
	readable := func(kt ck.KeyType, value []byte, encrypt bool) uint64 {
		k, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(kt)},
			{ck.CKA_VALUE, value}, {ck.CKA_SENSITIVE, no}, {ck.CKA_EXTRACTABLE, yes}, {ck.CKA_ENCRYPT, boolByte(encrypt)}})
		require.NoError(t, err)
		return k
	}
	value := make([]byte, 16)
	_, _ = rand.Read(value)
	kw := tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_WRAP}

	// Matches: wrapped, and the bytes are RFC 3394 under Go's AES.
	wrapped, err := l.WrapKey(h, kw, kek, readable(ck.CKK_AES, value, true))
	require.NoError(t, err)
	require.Equal(t, goKeyWrap(t, kekValue, value), wrapped)
	// Each mismatch: the key type, the length, a usage.
	for name, k := range map[string]uint64{
		"generic secret": readable(ck.CKK_GENERIC_SECRET, value, true),
		"AES-256":        readable(ck.CKK_AES, make([]byte, 32), true),
		"no CKA_ENCRYPT": readable(ck.CKK_AES, value, false),
	} {
		_, err := l.WrapKey(h, kw, kek, k)
		require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err), name)
		_, err = l.WrapKeyLen(h, kw, kek, k)
		require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err), name)
	}

	// Unwrap: the template's attributes, the caller's added.
	aes := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}}
	k, err := l.UnwrapKey(h, kw, kek, wrapped, append(aes, tpmtoken.Attr{Type: ck.CKA_ID, Value: []byte("id")},
		tpmtoken.Attr{Type: ck.CKA_DECRYPT, Value: no}))
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_DECRYPT, ck.CKA_EXTRACTABLE, ck.CKA_ID, ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, []byte("from kek"), res[0].Value)
	require.Equal(t, no, res[1].Value)
	require.Equal(t, yes, res[2].Value)
	require.Equal(t, []byte("id"), res[3].Value)
	require.Equal(t, value, res[4].Value, "the unwrapped key is the wrapped key")
	for _, c := range []tpmtoken.Attr{{ck.CKA_DECRYPT, yes}, {ck.CKA_LABEL, []byte("other")}, {ck.CKA_SENSITIVE, yes}} {
		_, err = l.UnwrapKey(h, kw, kek, wrapped, append(aes, c))
		require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err), "0x%x", c.Type)
	}

	// The authenticated wrap (AES-CCM) holds to the same templates.
	ccmWrap := func(key uint64) ([]byte, *mech.CCMMessageParams, error) {
		p := &mech.CCMMessageParams{Nonce: make([]byte, 12), Generator: ck.CKG_GENERATE, MACLen: 16}
		ct, err := l.WrapKeyAuthenticated(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: p}, kek, key, nil)
		return ct, p, err
	}
	_, _, err = ccmWrap(readable(ck.CKK_GENERIC_SECRET, value, true))
	require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err))
	ct, p, err := ccmWrap(readable(ck.CKK_AES, value, true))
	require.NoError(t, err)
	unwrapCCM := func(tmpl []tpmtoken.Attr) (uint64, error) {
		up := &mech.CCMMessageParams{DataLen: ck.ULong(len(ct)), Nonce: p.Nonce, MAC: p.MAC, MACLen: 16}
		return l.UnwrapKeyAuthenticated(h, tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: up}, kek, ct, tmpl, nil)
	}
	k, err = unwrapCCM(aes)
	require.NoError(t, err)
	res, err = l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, []byte("from kek"), res[0].Value)
	require.Equal(t, value, res[1].Value)
	_, err = unwrapCCM(append(aes, tpmtoken.Attr{Type: ck.CKA_DECRYPT, Value: yes}))
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
}

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// goKeyWrap is RFC 3394 with Go's crypto/aes, written from the RFC here
// (no code of the token's).
func goKeyWrap(t *testing.T, kek, plain []byte) []byte {
	b, err := aes.NewCipher(kek)
	require.NoError(t, err)
	n := len(plain) / 8
	a := []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	r := make([][]byte, n)
	for i := range r {
		r[i] = append([]byte{}, plain[8*i:8*i+8]...)
	}
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i])
			b.Encrypt(buf, buf)
			tt := uint64(n*j + i + 1)
			copy(a, buf[:8])
			for k := 0; k < 8; k++ {
				a[7-k] ^= byte(tt >> (8 * k))
			}
			r[i] = append([]byte{}, buf[8:]...)
		}
	}
	out := append([]byte{}, a...)
	for _, x := range r {
		out = append(out, x...)
	}
	return out
}

// CKA_DERIVE_TEMPLATE and CKA_DECAPSULATE_TEMPLATE go into the key
// C_DeriveKey / C_DecapsulateKey make (its value Go's ECDH or RSA secret);
// CKA_ENCAPSULATE_TEMPLATE is matched against the key an encapsulation
// would make (CKR_KEY_HANDLE_INVALID, nothing made).
func TestDeriveKEMTemplates(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	derived := tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("derived")}, tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no},
		tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes}, tpmtoken.Attr{Type: ck.CKA_SIGN, Value: yes})
	ecPub, ecPriv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_DERIVE, yes}, {ck.CKA_DERIVE_TEMPLATE, derived},
			{ck.CKA_DECAPSULATE_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("decapsulated")},
				tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes})}})
	require.NoError(t, err)
	spki, err := l.GetAttributeValue(h, ecPub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	require.NoError(t, err)
	pk, err := x509.ParsePKIXPublicKey(spki[0].Value)
	require.NoError(t, err)
	tokenKey, err := pk.(*ecdsa.PublicKey).ECDH()
	require.NoError(t, err)
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	z, err := eph.ECDH(tokenKey)
	require.NoError(t, err)
	ecdh1 := tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL, PublicData: eph.PublicKey().Bytes()}}
	generic := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}}
	attrsOf := func(k uint64) []tpmtoken.AttrResult {
		res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_SIGN, ck.CKA_VALUE})
		require.NoError(t, err)
		return res
	}

	k, err := l.DeriveKey(h, ecdh1, ecPriv, generic)
	require.NoError(t, err)
	res := attrsOf(k)
	require.Equal(t, "derived", string(res[0].Value))
	require.Equal(t, yes, res[1].Value)
	require.Equal(t, z, res[2].Value, "the derived key is Go's ECDH secret")
	_, err = l.DeriveKey(h, ecdh1, ecPriv, append(generic, tpmtoken.Attr{Type: ck.CKA_SIGN, Value: no}))
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))

	k, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}, ecPriv,
		generic, eph.PublicKey().Bytes())
	require.NoError(t, err)
	res = attrsOf(k)
	require.Equal(t, "decapsulated", string(res[0].Value))
	require.Equal(t, z, res[2].Value, "the decapsulated key is Go's ECDH secret")
	_, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}, ecPriv,
		append(generic, tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("mine")}), eph.PublicKey().Bytes())
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))

	// Encapsulation to Go's RSA key, limited to generic secrets of 32 bytes.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	goRSA, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)},
		{ck.CKA_MODULUS, rk.N.Bytes()}, {ck.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rk.E)).Bytes()}, {ck.CKA_ENCRYPT, yes},
		{ck.CKA_ENCAPSULATE_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_KEY_TYPE, Value: ulong(ck.CKK_GENERIC_SECRET)},
			tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(32)})}})
	require.NoError(t, err)
	oaep := tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}
	readable := []tpmtoken.Attr{{ck.CKA_SENSITIVE, no}, {ck.CKA_EXTRACTABLE, yes}}
	ct, k, err := l.EncapsulateKey(h, oaep, goRSA, append(append(generic, readable...), tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(32)}),
		tpmtoken.Dest{Cap: 256})
	require.NoError(t, err)
	got, err := rsa.DecryptOAEP(sha256.New(), nil, rk, ct, nil)
	require.NoError(t, err)
	require.Equal(t, got, attrsOf(k)[2].Value, "Go's private key recovers the new key's secret")
	for name, tmpl := range map[string][]tpmtoken.Attr{
		"AES":      {{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)}, {ck.CKA_VALUE_LEN, ulong(32)}},
		"16 bytes": append(append([]tpmtoken.Attr{}, generic...), tpmtoken.Attr{Type: ck.CKA_VALUE_LEN, Value: ulong(16)}),
	} {
		ct, k, err := l.EncapsulateKey(h, oaep, goRSA, tmpl, tpmtoken.Dest{Cap: 256})
		require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err), name)
		require.Nil(t, ct)
		require.Zero(t, k)
	}
}

// ML-KEM (on the fwTPM): CKA_DECAPSULATE_TEMPLATE goes into the key
// C_DecapsulateKey makes from a ciphertext of Go's crypto/mlkem (its value
// Go's secret); CKA_ENCAPSULATE_TEMPLATE limits C_EncapsulateKey.
func TestMLKEMTemplates(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	l := open(t, f.Spec, t.TempDir())
	defer l.Close()
	h := provision(t, l)
	yes, no := []byte{1}, []byte{0}
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_KEM_768)},
			{ck.CKA_ENCAPSULATE_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: no})}},
		[]tpmtoken.Attr{{ck.CKA_DECAPSULATE_TEMPLATE, tmplValue(tpmtoken.Attr{Type: ck.CKA_LABEL, Value: []byte("kem")},
			tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes})}})
	require.NoError(t, err)
	got, err := l.GetAttributeValue(h, pub, []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	ek, err := mlkem.NewEncapsulationKey768(got[0].Value)
	require.NoError(t, err)
	ss, ct := ek.Encapsulate()
	generic := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}}
	k, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, priv, generic, ct)
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, k, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, "kem", string(res[0].Value))
	require.Equal(t, ss, res[1].Value, "the decapsulated key is Go's ML-KEM secret")
	_, err = l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, priv, append(generic, tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: yes}), ct)
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))

	n, err := l.EncapsulateKeyLen(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, pub)
	require.NoError(t, err)
	_, _, err = l.EncapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, pub,
		append(generic, tpmtoken.Attr{Type: ck.CKA_SENSITIVE, Value: no}, tpmtoken.Attr{Type: ck.CKA_EXTRACTABLE, Value: yes}), tpmtoken.Dest{Cap: n})
	require.Equal(t, ck.CKR_KEY_HANDLE_INVALID, rv(err), "an extractable key does not match the template")
	_, k, err = l.EncapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, pub, generic, tpmtoken.Dest{Cap: n})
	require.NoError(t, err)
	require.NotZero(t, k)
}
