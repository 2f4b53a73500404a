package tpmtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"encoding/asn1"
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

var kdfHash = map[uint64]crypto.Hash{
	ck.CKD_NULL: 0, ck.CKD_SHA1_KDF: crypto.SHA1, ck.CKD_SHA224_KDF: crypto.SHA224,
	ck.CKD_SHA256_KDF: crypto.SHA256, ck.CKD_SHA384_KDF: crypto.SHA384, ck.CKD_SHA512_KDF: crypto.SHA512,
}

var ecdhCurves = map[tpm2.TPMECCCurve]ecdh.Curve{
	tpm2.TPMECCNistP256: ecdh.P256(), tpm2.TPMECCNistP384: ecdh.P384(), tpm2.TPMECCNistP521: ecdh.P521(),
}

// DeriveKey is CKM_ECDH1_DERIVE: the TPM multiplies the other party's
// point by the private key (TPM2_ECDH_ZGen), the module applies the KDF,
// and the result becomes a secret key in the TPM, per the template.
func (l *Library) DeriveKey(h uint64, m Mechanism, base uint64, tmpl []Attr) (uint64, error) {
	if m.Type != ck.CKM_ECDH1_DERIVE {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	s, o, err := l.keyOpInit(h, base, func(*Session) bool { return false })
	if err != nil {
		return 0, err
	}
	if o.class() != ck.CKO_PRIVATE_KEY || o.keyType() != ck.CKK_EC || o.key == nil {
		return 0, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.Attrs.Bool(ck.CKA_DERIVE) {
		return 0, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	if !o.allows(m.Type) {
		return 0, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	// Module-decoded CK_ECDH1_DERIVE_PARAMS: kdf, shared length, shared, public.
	if len(m.Param) < 16 {
		return 0, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	kdf, ok := kdfHash[binary.NativeEndian.Uint64(m.Param)]
	sharedLen := binary.NativeEndian.Uint64(m.Param[8:])
	if !ok || sharedLen > uint64(len(m.Param)-16) || (kdf == 0 && sharedLen != 0) {
		return 0, ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	shared, public := m.Param[16:16+sharedLen], m.Param[16+sharedLen:]
	cv := curveOf(o.Attrs[ck.CKA_EC_PARAMS])
	if cv == nil {
		return 0, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	peer, err := peerPoint(cv, public)
	if err != nil {
		return 0, err
	}

	t := NewTemplate(tmpl)
	if class, ok, err := t.ULong(ck.CKA_CLASS); err != nil || (ok && class != ck.CKO_SECRET_KEY) {
		return 0, ck.E(ck.CKR_TEMPLATE_INCONSISTENT)
	}
	kt, ok, err := t.ULong(ck.CKA_KEY_TYPE)
	if err != nil {
		return 0, err
	}
	if !ok {
		kt = ck.CKK_GENERIC_SECRET
	}
	size := tpm.CurveBytes(cv.tpm)
	n, hasLen, err := t.ULong(ck.CKA_VALUE_LEN)
	if err != nil {
		return 0, err
	}
	switch {
	case !hasLen && kt == ck.CKK_GENERIC_SECRET:
		n = uint64(size)
	case !hasLen:
		return 0, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	case n == 0 || n > maxSecretBytes || (kdf == 0 && n > uint64(size)):
		return 0, ck.Errorf(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN %d", n)
	}
	delete(t, ck.CKA_VALUE_LEN)
	a, err := secretAttrs(t, kt)
	if err != nil {
		return 0, err
	}
	if !s.tok.userLoggedIn() {
		return 0, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	key := o.key
	value := func(e *tpm.Engine) ([]byte, error) {
		z, err := e.ECDH(key, peer[1:1+size], peer[1+size:])
		if err != nil {
			return nil, err
		}
		return x963KDF(kdf, leftPad(z, size), shared, int(n)), nil
	}
	a.setOrigin(false, 0, o.Attrs.Bool(ck.CKA_ALWAYS_SENSITIVE), o.Attrs.Bool(ck.CKA_NEVER_EXTRACTABLE))
	return l.addSecret(s, "C_DeriveKey", ck.CKF_DERIVE, a, kt, int(n), nil, value)
}

// peerPoint accepts the other party's public value as an uncompressed
// point, raw or DER-wrapped in an OCTET STRING (both are seen in the
// wild), and checks that it is on the key's curve.
func peerPoint(cv *curveInfo, public []byte) ([]byte, error) {
	size := tpm.CurveBytes(cv.tpm)
	if len(public) != 1+2*size {
		var inner []byte
		if rest, err := asn1.Unmarshal(public, &inner); err == nil && len(rest) == 0 {
			public = inner
		}
	}
	if len(public) != 1+2*size || public[0] != 4 {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the public value must be an uncompressed point")
	}
	if _, err := ecdhCurves[cv.tpm].NewPublicKey(public); err != nil {
		return nil, ck.Wrap(ck.CKR_MECHANISM_PARAM_INVALID, err)
	}
	return public, nil
}

// x963KDF is the ANSI X9.63 KDF of PKCS#11's CKD_SHA*_KDF:
// Hash(Z || counter || sharedInfo) for counter = 1, 2, ...; with the NULL
// KDF the key is Z's leftmost n bytes.
func x963KDF(h crypto.Hash, z, shared []byte, n int) []byte {
	if h == 0 {
		return bytes.Clone(z[:n])
	}
	var out []byte
	for counter := uint32(1); len(out) < n; counter++ {
		d := h.New()
		d.Write(z)
		_ = binary.Write(d, binary.BigEndian, counter)
		d.Write(shared)
		out = d.Sum(out)
	}
	return out[:n]
}
