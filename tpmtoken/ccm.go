package tpmtoken

import (
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// ccmOp is CKM_AES_CCM in C_Encrypt/C_Decrypt: mech.CCM formats the
// blocks, the TPM runs both of CCM's AES passes (see mech.CCM). Updates
// only gather input; the single-part call or the final part runs it.
type ccmOp struct{ *mech.CCM }

func (c *ccmOp) outLen(p Part, inLen int) (int, bool, error) {
	var n int
	var err error
	switch p {
	case Update:
		n, err = c.UpdateLen(inLen)
	case Final:
		n, err = c.FinalLen()
	default:
		n, err = c.OneShotLen(inLen)
	}
	return n, true, err
}

func (c *ccmOp) run(call *opCall, op *cipherOp) ([]byte, error) {
	in := call.in
	switch call.part {
	case Update:
		return []byte{}, c.Update(in)
	case Final:
		var err error
		if in, err = c.Final(); err != nil {
			return nil, err
		}
	default:
		if _, err := c.OneShotLen(len(in)); err != nil {
			return nil, err
		}
	}
	return ccmRun(call, op, c.CCM, in)
}

// ccmRun is one whole CCM encryption or decryption of in as one TPM job
// (it may pend on an async session). Encryption: the CBC-MAC T over the
// plaintext, then CTR from A0 over T‖plaintext gives the masked tag and
// the ciphertext. Decryption: CTR from A0 over tag‖ciphertext gives the
// claimed T and the plaintext, then the CBC-MAC over that plaintext; the
// plaintext leaves only if the two agree (mech.CCM.Open).
func ccmRun(c *opCall, op *cipherOp, m *mech.CCM, in []byte) ([]byte, error) {
	key, decrypt := op.key.key, op.decrypt
	type res struct{ ctr, mac []byte }
	job := func(e *tpm.Engine) (res, error) {
		ctr, mac, err := ccmPasses(e, key, m, decrypt, in)
		return res{ctr, mac}, err
	}
	finish := func(r res, err error) (Result, error) {
		if err != nil {
			clear(r.ctr)
			return Result{}, err
		}
		if !decrypt {
			return Result{Data: m.Seal(r.ctr)}, nil
		}
		out, err := m.Open(r.ctr, r.mac)
		return Result{Data: out}, err
	}
	flag := ck.CKF_ENCRYPT
	if decrypt {
		flag = ck.CKF_DECRYPT
	}
	r, err := start(c.l, c.s, c.fn, flag, job, finish, nil, c.dst)
	return r.Data, err
}

// ccmPasses runs CCM's two TPM passes over in with key: encryption
// gives the CTR output only (mac nil), for m.Seal; decryption gives the
// CTR output and the CBC-MAC over the plaintext it holds, for m.Open.
func ccmPasses(e *tpm.Engine, key *tpm.Loadable, m *mech.CCM, decrypt bool, in []byte) (ctr, mac []byte, err error) {
	if decrypt {
		ct, tag := m.Split(in)
		ctr, _, err = e.EncryptDecrypt(key, false, tpm2.TPMAlgCTR, m.Counter0(), m.CTRInput(tag, ct)...)
		if err != nil {
			return nil, nil, err
		}
		// The unverified plaintext is not copied (MACInput's parts).
		mac, err = e.CBCMAC(key, m.MACInput(ctr[mech.AESBlock:])...)
		return ctr, mac, err
	}
	mac, err = e.CBCMAC(key, m.MACInput(in)...)
	if err != nil {
		return nil, nil, err
	}
	ctr, _, err = e.EncryptDecrypt(key, false, tpm2.TPMAlgCTR, m.Counter0(), m.CTRInput(mac, in)...)
	clear(mac)
	return ctr, nil, err
}

// errAEADDual refuses a dual-function decryption (C_DecryptDigestUpdate,
// C_DecryptVerifyUpdate) of a CCM decryption: its updates release no
// plaintext before the tag is verified at the final part, so the other
// half would be fed nothing and give a wrong digest or verdict.
var errAEADDual = ck.Errorf(ck.CKR_FUNCTION_NOT_SUPPORTED, "CKM_AES_CCM releases no plaintext before the final part: no dual-function decryption")

// aeadDecrypt says whether session h's decryption is CCM.
func (l *Library) aeadDecrypt(h uint64) bool {
	s, err := l.session(h)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.op(OpDecrypt).(*cipherOp)
	return ok && op.ccm != nil
}
