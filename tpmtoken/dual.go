package tpmtoken

import "github.com/tpm11/tpm11/ck"

// The dual-function updates of PKCS#11, composed from the single ones:
// both operations must be active; the encryption or decryption half runs
// first (synchronously, even on an async session: its output feeds the
// other half).

// requireOp fails unless session h has an active operation of kind.
func (l *Library) requireOp(h uint64, kind OpKind) error {
	s, err := l.session(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.op(kind) == nil {
		return ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	return nil
}

// DigestEncryptUpdate digests and encrypts a part.
func (l *Library) DigestEncryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	if err := l.requireOp(h, OpDigest); err != nil {
		return nil, err
	}
	dst.Wait = true
	out, err := l.EncryptUpdate(h, in, dst)
	if err != nil {
		return nil, err
	}
	return out, l.DigestUpdate(h, in)
}

// DecryptDigestUpdate decrypts a part and digests the plaintext.
func (l *Library) DecryptDigestUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	if err := l.requireOp(h, OpDigest); err != nil {
		return nil, err
	}
	if l.aeadDecrypt(h) {
		return nil, errAEADDual
	}
	dst.Wait = true
	out, err := l.DecryptUpdate(h, in, dst)
	if err != nil {
		return nil, err
	}
	return out, l.DigestUpdate(h, out)
}

// SignEncryptUpdate signs and encrypts a part.
func (l *Library) SignEncryptUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	if err := l.requireOp(h, OpSign); err != nil {
		return nil, err
	}
	dst.Wait = true
	out, err := l.EncryptUpdate(h, in, dst)
	if err != nil {
		return nil, err
	}
	return out, l.SignUpdate(h, in)
}

// DecryptVerifyUpdate decrypts a part and feeds the plaintext to the
// verification.
func (l *Library) DecryptVerifyUpdate(h uint64, in []byte, dst Dest) ([]byte, error) {
	if err := l.requireOp(h, OpVerify); err != nil {
		return nil, err
	}
	if l.aeadDecrypt(h) {
		return nil, errAEADDual
	}
	dst.Wait = true
	out, err := l.DecryptUpdate(h, in, dst)
	if err != nil {
		return nil, err
	}
	return out, l.VerifyUpdate(h, out)
}
