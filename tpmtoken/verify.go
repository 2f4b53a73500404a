package tpmtoken

import (
	"crypto/subtle"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Verification (C_Verify*), verification with recovery (C_VerifyRecover)
// and C_VerifySignature* (3.2: the signature is given at init, then the
// data in one or more parts): in software with the public key, or an HMAC
// computed in the TPM and compared.

const (
	OpVerify          OpKind = 2
	OpVerifyRecover   OpKind = 6
	OpVerifySignature OpKind = 7
)

func init() {
	defineKind(OpVerify, "verify", ck.CKF_VERIFY)
	defineKind(OpVerifyRecover, "verify-recover", ck.CKF_VERIFY_RECOVER)
	defineKind(OpVerifySignature, "verify-signature", ck.CKF_VERIFY)
}

// verifyOp is an initialized C_Verify*.
type verifyOp struct {
	opState
	sig     *mech.Signature
	in      *mech.Input
	pub     any             // the public key of a signature
	mac     *Object         // the secret key of an HMAC
	given   []byte          // the signature of C_VerifySignature*, given at init
	pss     *mech.PSSParams // the mechanism's parameter, for C_GetOperationState
	recover bool            // C_VerifyRecover
}

// outLen is C_VerifyRecover's (the only verification with output): at
// most the modulus size.
func (op *verifyOp) outLen(Part, int) (int, bool, error) { return op.sig.Len(), false, nil }

func (op *verifyOp) run(c *opCall) ([]byte, error) {
	switch {
	case c.part == Update:
		return nil, feed(op.sig, op.in, c.in)
	case op.recover:
		return op.sig.Recover(op.pub, c.in)
	case c.part == Single:
		if err := op.in.Write(c.in); err != nil {
			return nil, err
		}
	}
	sig := c.sig
	if op.given != nil {
		sig = op.given
	}
	return nil, checkVerify(c, op, sig)
}

// VerifyInit starts verification with a public (or private) key object.
func (l *Library) VerifyInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpVerify, func(s *Session) (operation, error) { return newVerifyOp(s, m, key, OpVerify, nil) })
}

// VerifyRecoverInit starts C_VerifyRecover with key.
func (l *Library) VerifyRecoverInit(h uint64, m Mechanism, key uint64) error {
	return l.initOp(h, OpVerifyRecover, func(s *Session) (operation, error) { return newVerifyOp(s, m, key, OpVerifyRecover, nil) })
}

// VerifySignatureInit starts C_VerifySignature with the signature to check.
func (l *Library) VerifySignatureInit(h uint64, m Mechanism, key uint64, signature []byte) error {
	if signature == nil {
		signature = []byte{}
	}
	return l.initOp(h, OpVerifySignature, func(s *Session) (operation, error) {
		return newVerifyOp(s, m, key, OpVerifySignature, signature)
	})
}

// newVerifyOp checks key and m for verification of kind and makes the
// operation; signature is C_VerifySignatureInit's.
func newVerifyOp(s *Session, m Mechanism, key uint64, kind OpKind, signature []byte) (*verifyOp, error) {
	o, err := initKey(s, key)
	if err != nil {
		return nil, err
	}
	usage := ck.CKA_VERIFY
	if kind == OpVerifyRecover {
		usage = ck.CKA_VERIFY_RECOVER
	}
	switch o.class() {
	case ck.CKO_PRIVATE_KEY:
		usage = ck.CKA_SIGN
	case ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY:
	default:
		return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if mech.SignOnly(m.Type) {
		// HashML-DSA: nothing here verifies it (mech/mldsa_hash.go).
		return nil, ck.Errorf(ck.CKR_MECHANISM_INVALID, "mechanism 0x%x signs only", m.Type)
	}
	sig, err := mech.NewSignature(m, mechKey(o))
	if err != nil {
		return nil, err
	}
	if err := checkKeyMech(m, o, usage); err != nil {
		return nil, err
	}
	if kind == OpVerifyRecover && !sig.Recoverable() {
		return nil, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	op := &verifyOp{sig: sig, in: sig.NewInput(), given: signature, recover: kind == OpVerifyRecover}
	if p, ok := m.Param.(mech.PSSParams); ok {
		op.pss = &p
	}
	if sig.IsMAC() {
		if o.key == nil {
			return nil, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		op.mac = o
	} else if op.pub, err = o.publicKey(); err != nil {
		return nil, err
	}
	return op, nil
}

// Verify checks sig over data in one part.
func (l *Library) Verify(h uint64, data, sig []byte) error {
	_, err := l.drive(h, opCall{kind: OpVerify, part: Single, fn: "C_Verify", in: data, sig: sig}, nil)
	return err
}

// VerifyUpdate feeds data to a multi-part verification.
func (l *Library) VerifyUpdate(h uint64, data []byte) error {
	_, err := l.drive(h, opCall{kind: OpVerify, part: Update, fn: "C_VerifyUpdate", in: data}, nil)
	return err
}

// VerifyFinal checks sig over everything fed.
func (l *Library) VerifyFinal(h uint64, sig []byte) error {
	_, err := l.drive(h, opCall{kind: OpVerify, part: Final, fn: "C_VerifyFinal", sig: sig}, nil)
	return err
}

// VerifyRecover checks signature and returns the data it carries.
func (l *Library) VerifyRecover(h uint64, signature []byte, dst Dest) ([]byte, error) {
	return l.drive(h, opCall{kind: OpVerifyRecover, part: Single, fn: "C_VerifyRecover", in: signature}, &dst)
}

// VerifySignature checks the signature given at init over data, in one part.
func (l *Library) VerifySignature(h uint64, data []byte) error {
	_, err := l.drive(h, opCall{kind: OpVerifySignature, part: Single, fn: "C_VerifySignature", in: data}, nil)
	return err
}

// VerifySignatureUpdate feeds a part.
func (l *Library) VerifySignatureUpdate(h uint64, data []byte) error {
	_, err := l.drive(h, opCall{kind: OpVerifySignature, part: Update, fn: "C_VerifySignatureUpdate", in: data}, nil)
	return err
}

// VerifySignatureFinal checks the signature given at init over every part.
func (l *Library) VerifySignatureFinal(h uint64) error {
	_, err := l.drive(h, opCall{kind: OpVerifySignature, part: Final, fn: "C_VerifySignatureFinal"}, nil)
	return err
}

// checkVerify checks sig over what op was fed.
func checkVerify(c *opCall, op *verifyOp, sig []byte) error {
	input := op.in.Value()
	if op.mac == nil {
		return op.sig.Verify(op.pub, input, sig)
	}
	if len(sig) != op.sig.Len() {
		return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
	}
	if err := c.s.tok.usable(op.mac); err != nil {
		return err
	}
	call, err := op.sig.Plan(input)
	if err != nil {
		return err
	}
	v, err := do(c.l, c.s.Handle, callJob(op.mac.key, call))
	if err != nil {
		return keyAuthError(err)
	}
	if subtle.ConstantTimeCompare(v, sig) != 1 {
		return ck.E(ck.CKR_SIGNATURE_INVALID)
	}
	return nil
}
