package tpmtoken

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"slices"

	"github.com/tpm11/tpm11/ck"
)

// The certificate attributes of the spec (certificate objects): common
// ones, those of X.509 public key certificates and those of X.509
// attribute certificates.
var (
	certCommon = []ck.AttributeType{ck.CKA_CERTIFICATE_TYPE, ck.CKA_TRUSTED, ck.CKA_CERTIFICATE_CATEGORY,
		ck.CKA_CHECK_VALUE, ck.CKA_START_DATE, ck.CKA_END_DATE, ck.CKA_PUBLIC_KEY_INFO, ck.CKA_VALUE}
	certX509 = []ck.AttributeType{ck.CKA_SUBJECT, ck.CKA_ID, ck.CKA_ISSUER, ck.CKA_SERIAL_NUMBER, ck.CKA_URL,
		ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY, ck.CKA_JAVA_MIDP_SECURITY_DOMAIN,
		ck.CKA_NAME_HASH_ALGORITHM}
	certAttr = []ck.AttributeType{ck.CKA_OWNER, ck.CKA_AC_ISSUER, ck.CKA_SERIAL_NUMBER, ck.CKA_ATTR_TYPES}

	// What may change after creation, besides the storage attributes.
	certModifiable = map[ck.ULong][]ck.AttributeType{
		ck.CKC_X_509:           {ck.CKA_ID, ck.CKA_ISSUER, ck.CKA_SERIAL_NUMBER},
		ck.CKC_X_509_ATTR_CERT: {ck.CKA_AC_ISSUER, ck.CKA_SERIAL_NUMBER, ck.CKA_ATTR_TYPES},
	}
)

// completeCertificate checks a certificate's template and fills what the
// spec derives or defaults: for X.509, subject, issuer, serial and the
// public key info from the certificate itself when the template left them
// out; CKA_CHECK_VALUE (the first three bytes of SHA-1 of the value, and a
// given one must match); the categories and hash algorithm defaults.
// CKA_TRUSTED can only be set by the SO.
func completeCertificate(a Attrs, tok *Token) error {
	ct, ok := a.ULong(ck.CKA_CERTIFICATE_TYPE)
	if !ok {
		return ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	var own []ck.AttributeType
	switch ct {
	case ck.CKC_X_509:
		own = certX509
	case ck.CKC_X_509_ATTR_CERT:
		own = certAttr
	default:
		return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "certificate type 0x%x", ct)
	}
	for typ := range a {
		if slices.Contains(certX509, typ) || slices.Contains(certAttr, typ) {
			if !slices.Contains(own, typ) {
				return ck.Errorf(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute 0x%x for certificate type 0x%x", typ, ct)
			}
		}
	}
	if a.Bool(ck.CKA_TRUSTED) {
		if u, ok := tok.loginState(); !ok || u != ck.CKU_SO {
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "only the SO may mark a certificate trusted")
		}
	}
	for _, d := range []ck.AttributeType{ck.CKA_START_DATE, ck.CKA_END_DATE} {
		if v, ok := a[d]; ok && !validDate(v) {
			return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute 0x%x is not a CK_DATE", d)
		}
	}
	value := a[ck.CKA_VALUE]
	if ct == ck.CKC_X_509 {
		if err := completeX509(a, value); err != nil {
			return err
		}
	} else if len(value) == 0 || len(a[ck.CKA_OWNER]) == 0 {
		return ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "an attribute certificate needs CKA_OWNER and CKA_VALUE")
	}
	if len(value) > 0 {
		sum := sha1.Sum(value)
		if cv, ok := a[ck.CKA_CHECK_VALUE]; ok && !bytes.Equal(cv, sum[:3]) {
			return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_CHECK_VALUE does not match the certificate")
		}
		a[ck.CKA_CHECK_VALUE] = sum[:3]
	}
	defaults := map[ck.AttributeType][]byte{
		ck.CKA_TRUSTED: boolBytes(false), ck.CKA_CERTIFICATE_CATEGORY: ulongBytes(0),
		ck.CKA_START_DATE: {}, ck.CKA_END_DATE: {}, ck.CKA_VALUE: {},
	}
	if ct == ck.CKC_X_509 {
		defaults[ck.CKA_URL], defaults[ck.CKA_ID], defaults[ck.CKA_ISSUER], defaults[ck.CKA_SERIAL_NUMBER] = []byte{}, []byte{}, []byte{}, []byte{}
		defaults[ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY], defaults[ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY] = []byte{}, []byte{}
		defaults[ck.CKA_JAVA_MIDP_SECURITY_DOMAIN] = ulongBytes(0)
		defaults[ck.CKA_NAME_HASH_ALGORITHM] = ulongBytes(uint64(ck.CKM_SHA_1))
	} else {
		defaults[ck.CKA_AC_ISSUER], defaults[ck.CKA_SERIAL_NUMBER], defaults[ck.CKA_ATTR_TYPES] = []byte{}, []byte{}, []byte{}
	}
	for typ, v := range defaults {
		if _, ok := a[typ]; !ok {
			a[typ] = v
		}
	}
	return nil
}

// completeX509 checks an X.509 public key certificate: the value, or a URL
// with the public key hashes that stand for it.
func completeX509(a Attrs, value []byte) error {
	if len(value) == 0 {
		if len(a[ck.CKA_URL]) == 0 {
			return ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "an X.509 certificate needs CKA_VALUE or CKA_URL")
		}
		if len(a[ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY]) == 0 || len(a[ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY]) == 0 || len(a[ck.CKA_SUBJECT]) == 0 {
			return ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "a certificate given by URL needs its subject and both public key hashes")
		}
		return nil
	}
	cert, err := x509.ParseCertificate(value)
	if err != nil {
		return ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	serial, _ := asn1.Marshal(cert.SerialNumber)
	for typ, v := range map[ck.AttributeType][]byte{
		ck.CKA_SUBJECT: cert.RawSubject, ck.CKA_ISSUER: cert.RawIssuer, ck.CKA_SERIAL_NUMBER: serial,
		ck.CKA_PUBLIC_KEY_INFO: cert.RawSubjectPublicKeyInfo,
	} {
		if _, ok := a[typ]; !ok {
			a[typ] = v
		}
	}
	return nil
}

// validDate says whether v is a CK_DATE: empty, or YYYYMMDD in digits.
func validDate(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if len(v) != 8 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
