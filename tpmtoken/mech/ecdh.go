package mech

import (
	"encoding/asn1"

	"github.com/tpm11/tpm11/ck"
)

// ECDH1 is CKM_ECDH1_DERIVE checked against the base key's curve: the TPM
// multiplies Peer by the private key (TPM2_ECDH_ZGen) and Derive applies
// the KDF to the x-coordinate it returns.
type ECDH1 struct {
	Curve  *Curve
	KDF    *Hash // nil: CKD_NULL
	Shared []byte
	Peer   []byte // the other party's uncompressed point, 04 || X || Y
}

// NewECDH1 checks CK_ECDH1_DERIVE_PARAMS. The public value is accepted as
// an uncompressed point, raw or DER-wrapped in an OCTET STRING (both are
// seen in the wild), and must be on the curve.
func NewECDH1(m Mechanism, c *Curve) (*ECDH1, error) {
	p, ok := m.Param.(ECDH1Params)
	if m.Type != ck.CKM_ECDH1_DERIVE {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !ok {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKM_ECDH1_DERIVE needs CK_ECDH1_DERIVE_PARAMS")
	}
	e := &ECDH1{Curve: c, Shared: p.SharedData}
	if p.KDF != ck.CKD_NULL {
		if e.KDF = HashOfKDF(p.KDF); e.KDF == nil {
			return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "KDF 0x%x", p.KDF)
		}
	} else if len(p.SharedData) != 0 {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "CKD_NULL takes no shared data")
	}
	public := p.PublicData
	if len(public) != 1+2*c.Bytes {
		var inner []byte
		if rest, err := asn1.Unmarshal(public, &inner); err == nil && len(rest) == 0 {
			public = inner
		}
	}
	if len(public) != 1+2*c.Bytes || public[0] != 4 {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the public value must be an uncompressed point")
	}
	if !c.onCurve(public) {
		return nil, ck.Errorf(ck.CKR_MECHANISM_PARAM_INVALID, "the public value is not on the key's curve")
	}
	e.Peer = public
	return e, nil
}

// MaxLen is the longest key the derivation can give (the NULL KDF gives
// at most Z's length).
func (e *ECDH1) MaxLen() int {
	if e.KDF == nil {
		return e.Curve.Bytes
	}
	return MaxSecretBytes
}

// PeerXY is the other party's point as the TPM takes it.
func (e *ECDH1) PeerXY() (x, y []byte) {
	n := e.Curve.Bytes
	return e.Peer[1 : 1+n], e.Peer[1+n:]
}

// Derive turns the shared x-coordinate z into an n-byte key.
func (e *ECDH1) Derive(z []byte, n int) []byte {
	return X963KDF(e.KDF, LeftPad(z, e.Curve.Bytes), e.Shared, n)
}
