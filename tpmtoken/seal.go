package tpmtoken

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// A token's PIN seals: sealed data objects under the SRK that hold the
// storage key's authValue, one openable with the SO PIN, one with the user
// PIN (docs/design.md). Only the TPM can tell a right PIN from a wrong one;
// every wrong one counts against its dictionary-attack lockout.

// pinScheme is how new PIN objects derive their authValue.
const pinScheme = 2

// pinAuth derives a PIN object's authValue. It is never stored; with only
// the disk, nothing can tell a right PIN from a wrong one. Scheme 0 (raw
// digest, possibly with zero bytes, so only usable as a password) is kept
// for tokens made by the first release until their next PIN change.
func pinAuth(scheme int, salt, pin []byte) []byte {
	h := sha256.New()
	h.Write([]byte("tpm11 PIN v1\x00"))
	h.Write(salt)
	h.Write(pin)
	if scheme == 0 {
		return h.Sum(nil)
	}
	return authText(h.Sum(nil)[:16])
}

// authText turns 16 bytes into a 32-byte authValue with no zero byte: go-tpm
// (v0.9.8) keys session HMACs with an authValue cut at its first zero byte,
// which the TPM does not do, so a value with a zero inside would fail every
// HMAC authorization.
func authText(b []byte) []byte { return []byte(hex.EncodeToString(b)) }

// sealPIN creates a PIN object under srk holding secret, openable with pin.
func sealPIN(e *tpm.Engine, srk *tpm.Loadable, secret, pin []byte) (store.PINObject, error) {
	salt := randBytes(16)
	pub, priv, err := e.Create(srk, tpm.SealTemplate(), pinAuth(pinScheme, salt, pin), secret)
	if err != nil {
		return store.PINObject{}, err
	}
	return store.PINObject{Scheme: pinScheme, Salt: salt, Public: pub.Bytes(), Private: priv.Buffer}, nil
}

// pinObject is userType's PIN object p of this token, authorized by pin.
func (t *Token) pinObject(userType ck.UserType, p *store.PINObject, pin []byte) *tpm.Loadable {
	return &tpm.Loadable{
		ID: pinID(userType, t.record().Serial), Parent: t.lib.srk,
		Public:  tpm2.BytesAs2B[tpm2.TPMTPublic](p.Public),
		Private: tpm2.TPM2BPrivate{Buffer: p.Private},
		Auth:    pinAuth(p.Scheme, p.Salt, pin),
	}
}

// unsealPIN checks pin against userType's PIN object p in the TPM and
// returns the secret. A wrong PIN counts against the TPM's lockout.
func (t *Token) unsealPIN(e *tpm.Engine, userType ck.UserType, p *store.PINObject, pin []byte) ([]byte, error) {
	return e.Unseal(t.pinObject(userType, p, pin))
}

func pinID(userType ck.UserType, serial string) string {
	if userType == ck.CKU_SO {
		return "so:" + serial
	}
	return "user:" + serial
}
