package tpmtoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// A private data object's value never reaches the disk in clear, is read
// back after login in another library, and can be changed and copied.
func TestPrivateDataObjectsAreSealed(t *testing.T) {
	spec, dir := startSwtpm(t), t.TempDir()
	l := open(t, spec, dir)
	h := provision(t, l)
	secret := []byte("the private data object's value, 0123456789")
	obj, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
		{ck.CKA_PRIVATE, []byte{1}}, {ck.CKA_LABEL, []byte("pd")}, {ck.CKA_VALUE, secret}})
	require.NoError(t, err)
	pub, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
		{ck.CKA_VALUE, []byte("public value")}})
	require.NoError(t, err)
	value := func(l *tpmtoken.Library, h, obj uint64) []byte {
		res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_LABEL, ck.CKA_VALUE})
		require.NoError(t, err)
		require.Equal(t, ck.RV(0), res[1].RV)
		return res[1].Value
	}
	require.Equal(t, secret, value(l, h, obj))
	require.Equal(t, []byte("public value"), value(l, h, pub))
	requireNotInStore(t, dir, secret[:16])

	// A second library (another process) reads it only after login.
	l2 := open(t, spec, dir)
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	require.NoError(t, err)
	_, err = l2.GetAttributeValue(h2, obj, []ck.AttributeType{ck.CKA_VALUE})
	require.Equal(t, ck.CKR_OBJECT_HANDLE_INVALID, rv(err))
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	require.Equal(t, secret, value(l2, h2, obj))

	// A new value is sealed too; a copy keeps the value; a public copy has it in clear.
	changed := []byte("a changed private value, abcdefghijklmnop")
	require.NoError(t, l2.SetAttributeValue(h2, obj, []tpmtoken.Attr{{ck.CKA_VALUE, changed}}))
	require.NoError(t, l2.SetAttributeValue(h2, obj, []tpmtoken.Attr{{ck.CKA_LABEL, []byte("renamed")}}))
	cp, err := l2.CopyObject(h2, obj, nil)
	require.NoError(t, err)
	require.Equal(t, changed, value(l2, h2, cp))
	l2.Close()
	requireNotInStore(t, dir, secret[:16], changed[:16])
	findID(t, l, h, []byte("no such id")) // a find reads what other processes changed
	require.Equal(t, changed, value(l, h, obj))
	pc, err := l.CopyObject(h, obj, []tpmtoken.Attr{{ck.CKA_PRIVATE, []byte{0}}})
	require.NoError(t, err)
	require.Equal(t, changed, value(l, h, pc))
	l.Close()
}

// Certificates carry the spec's whole attribute set: derived values,
// defaults, CKA_CHECK_VALUE checked, URL-only certificates, attribute
// certificates, and the modification rules.
func TestCertificateAttributes(t *testing.T) {
	l := open(t, startSwtpm(t), t.TempDir())
	defer l.Close()
	h := provision(t, l)
	der := selfSigned(t)
	sum := sha1.Sum(der)
	cert := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_CERTIFICATE)}, {ck.CKA_CERTIFICATE_TYPE, ulong(ck.CKC_X_509)},
		{ck.CKA_VALUE, der}, {ck.CKA_TOKEN, []byte{1}}}
	obj, err := l.CreateObject(h, cert)
	require.NoError(t, err)
	res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{ck.CKA_CHECK_VALUE, ck.CKA_URL, ck.CKA_NAME_HASH_ALGORITHM,
		ck.CKA_JAVA_MIDP_SECURITY_DOMAIN, ck.CKA_CERTIFICATE_CATEGORY, ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, ck.CKA_START_DATE, ck.CKA_TRUSTED})
	require.NoError(t, err)
	require.Equal(t, sum[:3], res[0].Value)
	require.Empty(t, res[1].Value)
	require.Equal(t, ulong(ck.CKM_SHA_1), res[2].Value)
	require.Equal(t, ulong(0), res[3].Value)
	require.Equal(t, ulong(0), res[4].Value)
	require.Empty(t, res[5].Value)
	require.Empty(t, res[6].Value)
	require.Equal(t, []byte{0}, res[7].Value)

	_, err = l.CreateObject(h, append(cert[:len(cert):len(cert)], tpmtoken.Attr{Type: ck.CKA_CHECK_VALUE, Value: []byte{1, 2, 3}}))
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err), "a wrong check value")
	_, err = l.CreateObject(h, append(cert[:len(cert):len(cert)], tpmtoken.Attr{Type: ck.CKA_TRUSTED, Value: []byte{1}}))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(err), "only the SO marks a certificate trusted")
	_, err = l.CreateObject(h, append(cert[:len(cert):len(cert)], tpmtoken.Attr{Type: ck.CKA_START_DATE, Value: []byte("2026-1-1")}))
	require.Equal(t, ck.CKR_ATTRIBUTE_VALUE_INVALID, rv(err))
	_, err = l.CreateObject(h, append(cert[:len(cert):len(cert)], tpmtoken.Attr{Type: ck.CKA_OWNER, Value: []byte{0x30, 0}}))
	require.Equal(t, ck.CKR_ATTRIBUTE_TYPE_INVALID, rv(err), "an attribute certificate's attribute on an X.509 one")

	// Only ID, issuer and serial (and the label) change after creation.
	require.NoError(t, l.SetAttributeValue(h, obj, []tpmtoken.Attr{{ck.CKA_ID, []byte{9}}, {ck.CKA_LABEL, []byte("c")}}))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, obj, []tpmtoken.Attr{{ck.CKA_SUBJECT, []byte{0x30, 0}}})))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, obj, []tpmtoken.Attr{{ck.CKA_CERTIFICATE_CATEGORY, ulong(2)}})))

	// A certificate known by its URL carries its subject and key hashes.
	byURL := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_CERTIFICATE)}, {ck.CKA_CERTIFICATE_TYPE, ulong(ck.CKC_X_509)},
		{ck.CKA_URL, []byte("https://example.test/c.der")}, {ck.CKA_SUBJECT, []byte{0x30, 0}}}
	_, err = l.CreateObject(h, byURL)
	require.Equal(t, ck.CKR_TEMPLATE_INCOMPLETE, rv(err))
	_, err = l.CreateObject(h, append(byURL, tpmtoken.Attr{Type: ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, Value: sum[:]},
		tpmtoken.Attr{Type: ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY, Value: sum[:]}))
	require.NoError(t, err)

	// An X.509 attribute certificate.
	ac, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_CERTIFICATE)}, {ck.CKA_CERTIFICATE_TYPE, ulong(ck.CKC_X_509_ATTR_CERT)},
		{ck.CKA_OWNER, []byte{0x30, 0}}, {ck.CKA_VALUE, []byte{0x30, 3, 2, 1, 0}}})
	require.NoError(t, err)
	require.NoError(t, l.SetAttributeValue(h, ac, []tpmtoken.Attr{{ck.CKA_ATTR_TYPES, []byte{0x30, 0}}}))
	require.Equal(t, ck.CKR_ATTRIBUTE_READ_ONLY, rv(l.SetAttributeValue(h, ac, []tpmtoken.Attr{{ck.CKA_OWNER, []byte{0x30, 1, 0}}})))
}

func selfSigned(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "tpm11 test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	return der
}
