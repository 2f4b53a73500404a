package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
)

// Signatures with message recovery (RSA PKCS#1 and X.509, single-part),
// and C_VerifySignature* (3.2: the signature is given at init, then the
// data in one or more parts).

// SignRecoverInit starts C_SignRecover with key.
func (l *Library) SignRecoverInit(h uint64, m Mechanism, key uint64) error {
	return l.signInit(h, m, key, OpSignRecover)
}

// SignRecover signs data so that it can be recovered from the signature:
// raw RSA in the TPM over the PKCS#1 type 1 block.
func (l *Library) SignRecover(h uint64, data []byte, dst Dest) ([]byte, error) {
	s, op, err := activeOp[*signOp](l, h, OpSignRecover, Single)
	if err != nil {
		return nil, err
	}
	defer s.end(OpSignRecover)
	if err := s.tok.usable(op.key); err != nil {
		return nil, err
	}
	if err := op.authorized(); err != nil {
		return nil, err
	}
	call, err := op.sig.RecoverPlan(data)
	if err != nil {
		return nil, err
	}
	res, err := start(l, s, "C_SignRecover", ck.CKF_SIGN_RECOVER, callJob(op.key.key, call), dataResult, nil, dst)
	return res.Data, err
}

// VerifyRecoverInit starts C_VerifyRecover with key.
func (l *Library) VerifyRecoverInit(h uint64, m Mechanism, key uint64) error {
	return l.verifyInit(h, m, key, OpVerifyRecover, nil)
}

// VerifyRecover checks signature and returns the data it carries.
func (l *Library) VerifyRecover(h uint64, signature []byte, dst Dest) ([]byte, error) {
	s, op, err := activeOp[*verifyOp](l, h, OpVerifyRecover, Single)
	if err != nil {
		return nil, err
	}
	out, err := op.sig.Recover(op.pub, signature)
	if err == nil {
		out, err = deliver(&op.opState, out, dst)
	}
	if err == nil {
		s.end(OpVerifyRecover)
	}
	return out, s.settle(OpVerifyRecover, err)
}

// VerifySignatureInit starts C_VerifySignature with the signature to check.
func (l *Library) VerifySignatureInit(h uint64, m Mechanism, key uint64, signature []byte) error {
	if signature == nil {
		signature = []byte{}
	}
	return l.verifyInit(h, m, key, OpVerifySignature, signature)
}

// VerifySignature checks the signature given at init over data, in one part.
func (l *Library) VerifySignature(h uint64, data []byte) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerifySignature, Single)
	if err != nil {
		return err
	}
	if err := op.in.Write(data); err != nil {
		return s.settle(OpVerifySignature, err)
	}
	return l.finishVerify(s, op, op.given)
}

// VerifySignatureUpdate feeds a part.
func (l *Library) VerifySignatureUpdate(h uint64, data []byte) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerifySignature, Update)
	if err != nil {
		return err
	}
	return s.settle(OpVerifySignature, feed(op.sig, op.in, data))
}

// VerifySignatureFinal checks the signature given at init over every part.
func (l *Library) VerifySignatureFinal(h uint64) error {
	s, op, err := activeOp[*verifyOp](l, h, OpVerifySignature, Final)
	if err != nil {
		return err
	}
	return l.finishVerify(s, op, op.given)
}

// CKS_LAST_VALIDATION_OK is C_GetSessionValidationFlags' one flag type.
const CKS_LAST_VALIDATION_OK = 0

// SessionValidationFlags is C_GetSessionValidationFlags: the validation
// flags of the session's last operation. The token has no validation
// objects (no FIPS or other validation to claim), so none is ever set.
func (l *Library) SessionValidationFlags(h uint64, typ uint64) (ck.Flags, error) {
	if _, err := l.anySession(h); err != nil {
		return 0, err
	}
	if typ != CKS_LAST_VALIDATION_OK {
		return 0, ck.Errorf(ck.CKR_ARGUMENTS_BAD, "validation flags type 0x%x", typ)
	}
	return 0, nil
}
