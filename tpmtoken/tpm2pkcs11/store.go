// Package tpm2pkcs11 reads the store of tpm2-pkcs11 (its SQLite database
// tpm2_pkcs11.sqlite3, made by tpm2_ptool) so that tpm11 can take over its
// keys without them leaving the TPM.
//
// What the store holds, as tpm2-pkcs11 1.x writes it (tpm2_ptool's Python,
// db.py, utils.py, commandlets_keys.py):
//
//   - pobjects: the primary key every token hangs under; config is YAML:
//     persistent ("esys-tr": a serialized ESYS_TR naming the persistent
//     handle and holding the key's TPM2B_PUBLIC) or transient (a template
//     name); objauth is its password (usually empty).
//   - tokens: id, label, pid (its primary).
//   - sealobjects: per token, the TPM2B_PUBLIC/TPM2B_PRIVATE of two sealed
//     objects under the primary (user and SO), each holding the token's
//     wrapping key (64 hex digits: an AES-256 key). A sealed object's
//     password is the first 32 hex digits of SHA-256(PIN || salt).
//   - tobjects: the PKCS#11 objects; attrs is YAML mapping CK_ATTRIBUTE_TYPE
//     to a value (byte arrays as hex). A key's TPM blobs are in the vendor
//     attributes CKA_TPM2_PUB_BLOB and CKA_TPM2_PRIV_BLOB (TPM2B), its
//     password (32 hex digits) in CKA_TPM2_OBJAUTH_ENC: AES-256-GCM under
//     the wrapping key, written as hex of "iv:tag:ciphertext" in hex.
//
// This package holds what the store says; tpm2pkcs11db reads it (the
// SQLite file and its YAML columns), apart so that libtpm11.so, which
// never reads it, does not link a YAML parser (and its regular
// expressions, compiled at every load).
package tpm2pkcs11

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Vendor attributes of tpm2-pkcs11 (CKA_VENDOR_DEFINED|0x0F000000|n).
const (
	CKA_TPM2_OBJAUTH_ENC = 0x8F000001
	CKA_TPM2_PUB_BLOB    = 0x8F000002
	CKA_TPM2_PRIV_BLOB   = 0x8F000003
)

// Store is a tpm2-pkcs11 store.
type Store struct {
	Path   string
	Tokens []*Token
}

// Token is one tpm2-pkcs11 token.
type Token struct {
	ID      int64
	Label   string
	Primary *Primary
	// UserPub, UserPriv (TPM2B) and UserSalt: the sealed object holding
	// the wrapping key under the user PIN; nil when no user PIN was set.
	UserPub, UserPriv []byte
	UserSalt          string
	Objects           []*Object
}

// Primary is a token's primary key.
type Primary struct {
	ID int64
	// Handle is the persistent handle (0 for a transient primary).
	Handle uint32
	// Public is the persistent key's TPM2B_PUBLIC as the ESYS_TR holds it.
	Public []byte
	// Template names a transient primary's template.
	Template string
	Auth     string
}

// Object is one PKCS#11 object of a token.
type Object struct {
	ID    int64
	Attrs map[uint64]any
}

// Token returns the token labelled label; with label empty, the only one.
func (s *Store) Token(label string) (*Token, error) {
	var labels []string
	for _, t := range s.Tokens {
		if label != "" && t.Label == label {
			return t, nil
		}
		labels = append(labels, fmt.Sprintf("%q", t.Label))
	}
	switch {
	case len(s.Tokens) == 0:
		return nil, errors.New("the tpm2-pkcs11 store holds no token")
	case label != "":
		return nil, fmt.Errorf("the tpm2-pkcs11 store has no token %q (it has %s)", label, strings.Join(labels, ", "))
	case len(s.Tokens) > 1:
		return nil, fmt.Errorf("the tpm2-pkcs11 store has %d tokens (%s): name one with --from-token", len(s.Tokens), strings.Join(labels, ", "))
	}
	return s.Tokens[0], nil
}

// SealAuth is the password of the token's user sealed object for pin.
func (t *Token) SealAuth(pin []byte) []byte {
	h := sha256.New()
	h.Write(pin)
	h.Write([]byte(t.UserSalt))
	return []byte(hex.EncodeToString(h.Sum(nil))[:32])
}

// Bytes returns a byte-array attribute (hex in the store).
func (o *Object) Bytes(typ uint64) ([]byte, bool) {
	v, ok := o.Attrs[typ]
	if !ok {
		return nil, false
	}
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

// ULong returns a CK_ULONG attribute.
func (o *Object) ULong(typ uint64) (uint64, bool) {
	switch v := o.Attrs[typ].(type) {
	case int:
		return uint64(v), true
	case int64:
		return uint64(v), true
	case uint64:
		return v, true
	}
	return 0, false
}

// Bool returns a CK_BBOOL attribute.
func (o *Object) Bool(typ uint64) (bool, bool) {
	v, ok := o.Attrs[typ].(bool)
	return v, ok
}

// Auth decrypts the object's TPM password with the token's wrapping key
// (as unsealed: 64 hex digits).
func (o *Object) Auth(wrappingKey []byte) ([]byte, error) {
	enc, ok := o.Bytes(CKA_TPM2_OBJAUTH_ENC)
	if !ok {
		return nil, errors.New("no wrapped authorization")
	}
	key := make([]byte, hex.DecodedLen(len(wrappingKey)))
	if _, err := hex.Decode(key, wrappingKey); err != nil || (len(key) != 16 && len(key) != 32) {
		return nil, errors.New("the unsealed wrapping key is not an AES key in hex")
	}
	defer clear(key)
	parts := strings.Split(string(enc), ":")
	if len(parts) != 3 {
		return nil, errors.New("wrapped authorization: not iv:tag:ciphertext")
	}
	var raw [3][]byte
	for i, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil {
			return nil, errors.New("wrapped authorization: not hex")
		}
		raw[i] = b
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCMWithNonceSize(blk, len(raw[0]))
	if err != nil {
		return nil, err
	}
	plain, err := g.Open(nil, raw[0], append(raw[2], raw[1]...), nil)
	if err != nil {
		return nil, errors.New("wrapped authorization does not decrypt with this token's key")
	}
	return plain, nil
}
