package tpmtoken_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// The schema's return codes (creating_objects.md, function_return_values.md)
// through every operation that makes or changes objects.
func TestSchemaReturnCodes(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	ec := tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}
	params := tpmtoken.Attr{Type: ck.CKA_EC_PARAMS, Value: p256}
	gen := func(pub, priv []tpmtoken.Attr) error {
		_, _, err := l.GenerateKeyPair(h, ec, append([]tpmtoken.Attr{params}, pub...), priv)
		return err
	}
	one := func(a tpmtoken.Attr) []tpmtoken.Attr { return []tpmtoken.Attr{a} }
	for _, c := range []struct {
		name string
		err  error
		want ck.RV
	}{
		{"an attribute no key has", gen(one(tpmtoken.Attr{Type: ck.CKA_OWNER, Value: []byte{0}}), nil), ck.CKR_ATTRIBUTE_TYPE_INVALID},
		{"set by the token", gen(one(tpmtoken.Attr{Type: ck.CKA_EC_POINT, Value: []byte{4}}), nil), ck.CKR_ATTRIBUTE_READ_ONLY},
		{"3.2's validation flags are the token's", gen(nil, one(tpmtoken.ULongAttr(ck.CKA_OBJECT_VALIDATION_FLAGS, 1))), ck.CKR_ATTRIBUTE_READ_ONLY},
		{"a CK_BBOOL of two bytes", gen(one(tpmtoken.Attr{Type: ck.CKA_VERIFY, Value: []byte{1, 0}}), nil), ck.CKR_ATTRIBUTE_VALUE_INVALID},
		{"a date that is none", gen(nil, one(tpmtoken.Attr{Type: ck.CKA_START_DATE, Value: []byte("2026")})), ck.CKR_ATTRIBUTE_VALUE_INVALID},
		{"another class", gen(one(tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PRIVATE_KEY)), nil), ck.CKR_TEMPLATE_INCONSISTENT},
		{"another key type", gen(nil, one(tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_RSA))), ck.CKR_TEMPLATE_INCONSISTENT},
		{"extractable in the TPM", gen(nil, one(tpmtoken.BoolAttr(ck.CKA_EXTRACTABLE, true))), ck.CKR_ATTRIBUTE_VALUE_INVALID},
	} {
		require.Equal(t, c.want, rv(c.err), c.name)
	}
	// A public key made from its values needs them (it was
	// CKR_ATTRIBUTE_VALUE_INVALID / CKR_CURVE_NOT_SUPPORTED before the
	// schema said what C_CreateObject requires).
	_, err := l.CreateObject(h, []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_PUBLIC_KEY), tpmtoken.ULongAttr(ck.CKA_KEY_TYPE, ck.CKK_EC), params})
	require.Equal(t, ck.CKR_TEMPLATE_INCOMPLETE, rv(err))
	_, err = l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{tpmtoken.BoolAttr(ck.CKA_SIGN, true)})
	require.Equal(t, ck.CKR_TEMPLATE_INCOMPLETE, rv(err), "no CKA_VALUE_LEN")
	_, err = l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_VALUE_LEN, 16),
		{Type: ck.CKA_VALUE, Value: make([]byte, 16)}})
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(err), "a generated key's value")

	pub, priv, err := l.GenerateKeyPair(h, ec, []tpmtoken.Attr{params}, []tpmtoken.Attr{{Type: ck.CKA_ID, Value: []byte{1}}})
	require.NoError(t, err)
	secret, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_VALUE_LEN, 16)})
	require.NoError(t, err)
	for _, o := range []uint64{pub, priv, secret} {
		res, err := l.GetAttributeValue(h, o, []ck.AttributeType{ck.CKA_OBJECT_VALIDATION_FLAGS, ck.CKA_VALUE, ck.CKA_OWNER})
		require.NoError(t, err)
		require.Equal(t, ulong(0), res[0].Value, "a key claims no validation")
		if o == pub {
			require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[1].RV)
		} else {
			require.Equal(t, ck.CKR_ATTRIBUTE_SENSITIVE, res[1].RV)
		}
		require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, res[2].RV)
	}

	// Changes: an identity changes, a usage only goes off, the class never.
	require.NoError(t, l.SetAttributeValue(h, priv, []tpmtoken.Attr{{Type: ck.CKA_ID, Value: []byte{2}}, tpmtoken.BoolAttr(ck.CKA_SIGN, false)}))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{tpmtoken.BoolAttr(ck.CKA_SIGN, true)})))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{tpmtoken.ULongAttr(ck.CKA_CLASS, ck.CKO_DATA)})))
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{Type: ck.CKA_OWNER, Value: []byte{0}}})))
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(l.SetAttributeValue(h, priv, []tpmtoken.Attr{{Type: ck.CKA_END_DATE, Value: []byte("x")}})))
	_, err = l.CopyObject(h, priv, []tpmtoken.Attr{tpmtoken.BoolAttr(ck.CKA_SENSITIVE, false)})
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(err))
	cp, err := l.CopyObject(h, priv, []tpmtoken.Attr{{Type: ck.CKA_LABEL, Value: []byte("copy")}})
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, cp, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_ID, ck.CKA_SIGN})
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("copy"), {2}, {0}}, [][]byte{res[0].Value, res[1].Value, res[2].Value})
}
