package tpmtoken

import (
	"crypto/aes"
	"crypto/cipher"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// A private token data object (CKO_DATA, CKA_PRIVATE and CKA_TOKEN true)
// never has its value written in clear: the value is encrypted with
// AES-256-GCM under a random key that is sealed in the TPM under the
// user's storage key, so only a logged-in user, through the TPM, can read
// it. The store holds the sealed key's blobs and the ciphertext; the value
// is never kept in memory either (each read unseals: one Load and one
// Unseal), and a session object, which never reaches the disk, is left as
// it is.

// valueAAD binds a ciphertext to its purpose.
var valueAAD = []byte("tpm11 private data object value v1")

// sealedData reports whether an object with attributes a keeps its value
// sealed.
func sealedData(a Attrs) bool {
	c, _ := a.ULong(ck.CKA_CLASS)
	return ck.ObjectClass(c) == ck.CKO_DATA && a.Bool(ck.CKA_PRIVATE) && a.Bool(ck.CKA_TOKEN)
}

// dataKeyTemplate is a sealed data object holding a data key: NoDA (its
// authValue is empty; the storage key's is what is guarded).
func dataKeyTemplate() tpm2.TPMTPublic {
	t := tpm.SealTemplate()
	t.ObjectAttributes.NoDA = true
	return t
}

// dataKey returns o's data key, unsealing it in the TPM, or making and
// sealing a new one when o has none.
func (t *Token) dataKey(o *Object) ([]byte, error) {
	storage := t.storage
	if o.seal == nil {
		key := randBytes(32)
		seal, err := do(t.lib, 0, func(e *tpm.Engine) (*tpm.Loadable, error) {
			pub, priv, err := e.Create(storage, dataKeyTemplate(), nil, key)
			if err != nil {
				return nil, err
			}
			return &tpm.Loadable{ID: "data:" + o.UID, Parent: storage, Public: pub, Private: priv}, nil
		})
		if err != nil {
			return nil, err
		}
		o.seal = seal
		return key, nil
	}
	seal := o.seal
	return do(t.lib, 0, func(e *tpm.Engine) ([]byte, error) { return e.Unseal(seal) })
}

// gcm is AES-256-GCM with key.
func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// openValue returns the plaintext value of a sealed data object.
func (t *Token) openValue(o *Object) ([]byte, error) {
	if !t.userLoggedIn() {
		return nil, ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	key, err := t.dataKey(o)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	g, err := gcm(key)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_GENERAL_ERROR, err)
	}
	n := g.NonceSize()
	if len(o.sealed) < n {
		return nil, ck.Errorf(ck.CKR_DEVICE_ERROR, "sealed value of %s is truncated", o.UID)
	}
	v, err := g.Open(nil, o.sealed[:n], o.sealed[n:], valueAAD)
	if err != nil {
		return nil, ck.Wrap(ck.CKR_DEVICE_ERROR, err)
	}
	return v, nil
}

// protect prepares o for the store before it is written or made visible:
// the value of a private token data object is encrypted and taken out of
// its attributes; an object that stops being one (a public copy) gets its
// value back in clear.
func (t *Token) protect(o *Object) error {
	value, hasValue := o.Attrs[ck.CKA_VALUE]
	switch {
	case sealedData(o.Attrs) && !hasValue:
		return nil // attributes other than the value changed: the ciphertext stands
	case sealedData(o.Attrs):
		key, err := t.dataKey(o)
		if err != nil {
			return err
		}
		defer clear(key)
		g, err := gcm(key)
		if err != nil {
			return ck.Wrap(ck.CKR_GENERAL_ERROR, err)
		}
		nonce := randBytes(g.NonceSize())
		o.sealed = g.Seal(nonce, nonce, value, valueAAD)
		delete(o.Attrs, ck.CKA_VALUE)
	case o.seal != nil && !hasValue:
		v, err := t.openValue(o)
		if err != nil {
			return err
		}
		o.Attrs[ck.CKA_VALUE] = v
		o.seal, o.sealed = nil, nil
	}
	return nil
}

// valueOf fills the CKA_VALUE results of a sealed data object.
func (t *Token) valueOf(o *Object, types []ck.AttributeType, res []AttrResult) error {
	if o.seal == nil {
		return nil
	}
	for i, typ := range types {
		if typ != ck.CKA_VALUE {
			continue
		}
		v, err := t.openValue(o)
		if err != nil {
			return err
		}
		res[i] = AttrResult{Value: v}
	}
	return nil
}
