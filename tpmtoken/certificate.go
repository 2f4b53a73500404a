package tpmtoken

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"

	"github.com/tpm11/tpm11/ck"
)

// completeCertificate fills what the spec derives for a certificate its
// schema (schema_certificate.go) built from template t: for X.509,
// subject, issuer, serial and the public key info from the certificate
// itself when the template left them out; CKA_CHECK_VALUE (the first three
// bytes of SHA-1 of the value, and a given one must match). CKA_TRUSTED
// can only be set by the SO.
func completeCertificate(a Attrs, t Template, tok *Token) error {
	if a.Bool(ck.CKA_TRUSTED) {
		if u, ok := tok.loginState(); !ok || u != ck.CKU_SO {
			return ck.Errorf(ck.CKR_ATTRIBUTE_READ_ONLY, "only the SO may mark a certificate trusted")
		}
	}
	value := a[ck.CKA_VALUE]
	if ct, _ := a.ULong(ck.CKA_CERTIFICATE_TYPE); ct == ck.CKC_X_509 {
		if err := completeX509(a, t, value); err != nil {
			return err
		}
	} else if len(value) == 0 {
		return ck.Errorf(ck.CKR_TEMPLATE_INCOMPLETE, "an attribute certificate needs CKA_OWNER and CKA_VALUE")
	}
	if len(value) > 0 {
		sum := sha1.Sum(value)
		if cv, ok := a[ck.CKA_CHECK_VALUE]; ok && !bytes.Equal(cv, sum[:3]) {
			return ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_CHECK_VALUE does not match the certificate")
		}
		a[ck.CKA_CHECK_VALUE] = sum[:3]
	}
	return nil
}

// completeX509 checks an X.509 public key certificate: the value, or a URL
// with the public key hashes that stand for it.
func completeX509(a Attrs, t Template, value []byte) error {
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
		if _, given := t[typ]; !given {
			a[typ] = v
		}
	}
	return nil
}
