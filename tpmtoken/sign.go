package tpmtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"hash"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
)

// input is what a sign or verify operation has been fed: hashed as it
// comes for the hashing mechanisms, kept whole for the raw ones.
type input struct {
	h   hash.Hash
	buf []byte
}

func newInput(spec mechSpec) input {
	if spec.hash != 0 {
		return input{h: spec.hash.New()}
	}
	return input{}
}

func (in *input) write(data []byte) {
	if in.h != nil {
		in.h.Write(data)
	} else {
		in.buf = append(in.buf, data...)
	}
}

// value is the digest, or the raw data.
func (in *input) value() []byte {
	if in.h != nil {
		return in.h.Sum(nil)
	}
	return in.buf
}

// signOp is an initialized C_Sign* operation.
type signOp struct {
	input
	key    *Object
	spec   mechSpec
	pss    pssParams
	sigLen int
}

type verifyOp struct {
	input
	pub  crypto.PublicKey
	mac  *Object // the secret key of an HMAC verification
	spec mechSpec
	pss  pssParams
}

// digestInfo prefixes (DER of DigestInfo up to the digest) by hash.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var tpmHash = map[crypto.Hash]tpm2.TPMAlgID{
	crypto.SHA1: tpm2.TPMAlgSHA1, crypto.SHA256: tpm2.TPMAlgSHA256,
	crypto.SHA384: tpm2.TPMAlgSHA384, crypto.SHA512: tpm2.TPMAlgSHA512,
}

// keySize is the signature length in bytes for key o, known before any
// TPM command: 2 × field size for ECDSA, the modulus size for RSA.
func keySize(o *Object) int {
	if o.keyType() == ck.CKK_RSA {
		return len(o.Attrs[ck.CKA_MODULUS])
	}
	if c := curveOf(o.Attrs[ck.CKA_EC_PARAMS]); c != nil {
		return 2 * ((c.curve.Params().BitSize + 7) / 8)
	}
	return 0
}

func checkMech(m Mechanism, o *Object, usage ck.AttributeType) (mechSpec, pssParams, error) {
	spec, ok := signMechs[m.Type]
	if !ok {
		return spec, pssParams{}, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if o.keyType() != spec.keyType {
		return spec, pssParams{}, ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !o.allows(m.Type) {
		return spec, pssParams{}, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	if !o.Attrs.Bool(usage) {
		return spec, pssParams{}, ck.E(ck.CKR_KEY_FUNCTION_NOT_PERMITTED)
	}
	var pss pssParams
	var err error
	if spec.pss {
		pss, err = parsePSS(m, spec)
	} else if len(m.Param) != 0 {
		err = ck.E(ck.CKR_MECHANISM_PARAM_INVALID)
	}
	return spec, pss, err
}

// keyOpInit returns session h and key for an *Init whose operation is
// not already active (busy says whether it is).
func (l *Library) keyOpInit(h, key uint64, busy func(*Session) bool) (*Session, *Object, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	active := busy(s)
	s.mu.Unlock()
	if active {
		return nil, nil, ck.E(ck.CKR_OPERATION_ACTIVE)
	}
	o, err := s.tok.object(key)
	if err != nil {
		return nil, nil, ck.E(ck.CKR_KEY_HANDLE_INVALID)
	}
	return s, o, nil
}

// SignInit starts a signature with key.
func (l *Library) SignInit(h uint64, m Mechanism, key uint64) error {
	s, o, err := l.keyOpInit(h, key, func(s *Session) bool { return s.sign != nil })
	if err != nil {
		return err
	}
	if (o.class() != ck.CKO_PRIVATE_KEY && o.class() != ck.CKO_SECRET_KEY) || o.key == nil {
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	if !s.tok.userLoggedIn() {
		return ck.E(ck.CKR_USER_NOT_LOGGED_IN)
	}
	spec, pss, err := checkMech(m, o, ck.CKA_SIGN)
	if err != nil {
		return err
	}
	op := &signOp{input: newInput(spec), key: o, spec: spec, pss: pss, sigLen: keySize(o)}
	if spec.mac != 0 {
		op.sigLen = spec.mac.Size()
	}
	s.mu.Lock()
	s.sign = op
	s.mu.Unlock()
	return nil
}

func (l *Library) signOp(h uint64) (*Session, *signOp, error) {
	return activeOp(l, h, func(s *Session) *signOp { return s.sign })
}

// activeOp returns session h and its operation that pick selects, or
// CKR_OPERATION_NOT_INITIALIZED when there is none.
func activeOp[T any](l *Library, h uint64, pick func(*Session) *T) (*Session, *T, error) {
	s, err := l.session(h)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	op := pick(s)
	if op == nil {
		return nil, nil, ck.E(ck.CKR_OPERATION_NOT_INITIALIZED)
	}
	return s, op, nil
}

// Sign signs data in one part. With query, or an output buffer smaller than
// the signature, it returns the length (CKR_BUFFER_TOO_SMALL for the latter)
// without touching the TPM and the operation stays active.
func (l *Library) Sign(h uint64, data []byte, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.signOp(h)
	if err != nil {
		return nil, 0, err
	}
	if answered, err := sized(op.sigLen, outCap, query); answered {
		return nil, op.sigLen, err
	}
	op.write(data)
	return l.finishSign(s, op, "C_Sign")
}

// SignUpdate feeds data to a multi-part signature.
func (l *Library) SignUpdate(h uint64, data []byte) error {
	s, op, err := l.signOp(h)
	if err != nil {
		return err
	}
	op.write(data)
	if op.h == nil && len(op.buf) > op.spec.maxInput() {
		s.endSign()
		return ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	return nil
}

// SignFinal finishes a multi-part signature; length rules as for Sign.
func (l *Library) SignFinal(h uint64, outCap int, query bool) ([]byte, int, error) {
	s, op, err := l.signOp(h)
	if err != nil {
		return nil, 0, err
	}
	if answered, err := sized(op.sigLen, outCap, query); answered {
		return nil, op.sigLen, err
	}
	return l.finishSign(s, op, "C_SignFinal")
}

func (s *Session) endSign() {
	s.mu.Lock()
	s.sign = nil
	s.mu.Unlock()
}

// finishSign runs the signature; on an async session it may pend (the
// operation is then consumed: its state lives in the pending job).
func (l *Library) finishSign(s *Session, op *signOp, fn string) ([]byte, int, error) {
	defer s.endSign()
	data := op.value()
	key := op.key.key
	var job func(e *tpm.Engine) (any, error)
	var err error
	switch {
	case op.spec.mac != 0:
		job = hmacJob(key, op.spec.mac, data)
	case op.key.keyType() == ck.CKK_EC:
		job, err = ecdsaJob(key, data, op.sigLen/2, curveOf(op.key.Attrs[ck.CKA_EC_PARAMS]).curve.Params().N.BitLen())
	default:
		job, err = rsaJob(key, op, data)
	}
	if err != nil {
		return nil, 0, err
	}
	// A signature is not secret: a detached sign may keep it in the store.
	res, err := l.start(s, fn, ck.CKF_SIGN, job, dataResult, &persistSpec{
		bound: op.sigLen,
		save: func(v any, err error) (asyncRecord, error) {
			if err != nil {
				return asyncRecord{}, err
			}
			return asyncRecord{Data: v.([]byte)}, nil
		},
	})
	if err != nil {
		return nil, op.sigLen, err
	}
	return res.Data, len(res.Data), nil
}

// maxInput bounds what a multi-part operation without a running hash
// accumulates: a raw signature's input is short; HMAC input is sent to the
// TPM in 1 KiB pieces at the end.
func (spec mechSpec) maxInput() int {
	if spec.mac != 0 {
		return 1 << 26
	}
	return 1 << 16
}

func hmacJob(key *tpm.Object, h crypto.Hash, data []byte) func(e *tpm.Engine) (any, error) {
	return func(e *tpm.Engine) (any, error) { return e.HMAC(key, tpmHash[h], data) }
}

// ecdsaJob signs a digest of any length the way ECDSA defines it: the
// leftmost order-size bits, as an integer. The TPM wants a digest exactly
// as long as the scheme's hash, so the integer is zero-padded on the left to
// the longest hash that fits (SHA-512 for P-521), which keeps the maths.
func ecdsaJob(key *tpm.Object, digest []byte, n, orderBits int) (func(e *tpm.Engine) (any, error), error) {
	if len(digest) == 0 {
		return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	z := new(big.Int).SetBytes(digest)
	if excess := len(digest)*8 - orderBits; excess > 0 {
		z.Rsh(z, uint(excess))
	}
	hLen := min(n, 64)
	if (z.BitLen()+7)/8 > hLen {
		return nil, ck.Errorf(ck.CKR_DATA_LEN_RANGE, "the TPM signs at most a %d-byte integer", hLen)
	}
	alg := map[int]tpm2.TPMAlgID{32: tpm2.TPMAlgSHA256, 48: tpm2.TPMAlgSHA384, 64: tpm2.TPMAlgSHA512}[hLen]
	d := z.FillBytes(make([]byte, hLen))
	scheme := tpm2.TPMTSigScheme{
		Scheme:  tpm2.TPMAlgECDSA,
		Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
	}
	return func(e *tpm.Engine) (any, error) {
		sig, err := e.Sign(key, d, scheme)
		if err != nil {
			return nil, err
		}
		ec, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		out := make([]byte, 2*n)
		new(big.Int).SetBytes(ec.SignatureR.Buffer).FillBytes(out[:n])
		new(big.Int).SetBytes(ec.SignatureS.Buffer).FillBytes(out[n:])
		return out, nil
	}, nil
}

// rsaJob picks the TPM's own scheme where it does exactly what was asked
// (PKCS#1 v1.5 over a known hash; PSS with salt = hash length) and raw RSA
// over a module-encoded block otherwise.
func rsaJob(key *tpm.Object, op *signOp, input []byte) (func(e *tpm.Engine) (any, error), error) {
	k := op.sigLen
	tpmSign := func(alg tpm2.TPMAlgID, h crypto.Hash, digest []byte) func(e *tpm.Engine) (any, error) {
		scheme := tpm2.TPMTSigScheme{
			Scheme:  alg,
			Details: tpm2.NewTPMUSigScheme(alg, &tpm2.TPMSSchemeHash{HashAlg: tpmHash[h]}),
		}
		return func(e *tpm.Engine) (any, error) {
			sig, err := e.Sign(key, digest, scheme)
			if err != nil {
				return nil, err
			}
			var rs *tpm2.TPMSSignatureRSA
			if alg == tpm2.TPMAlgRSAPSS {
				rs, err = sig.Signature.RSAPSS()
			} else {
				rs, err = sig.Signature.RSASSA()
			}
			if err != nil {
				return nil, err
			}
			return leftPad(rs.Sig.Buffer, k), nil
		}
	}
	raw := func(block []byte) func(e *tpm.Engine) (any, error) {
		return func(e *tpm.Engine) (any, error) {
			out, err := e.RSARaw(key, block)
			if err != nil {
				return nil, err
			}
			return leftPad(out, k), nil
		}
	}
	switch {
	case op.spec.raw:
		if len(input) > k {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		return raw(leftPad(input, k)), nil
	case op.spec.pss:
		if len(input) != op.pss.hash.Size() {
			return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
		}
		if op.pss.sLen == op.pss.hash.Size() && tpmHash[op.pss.hash] != 0 {
			return tpmSign(tpm2.TPMAlgRSAPSS, op.pss.hash, input), nil
		}
		em, err := pssEncode(input, k, op.pss)
		if err != nil {
			return nil, err
		}
		return raw(em), nil
	case op.spec.hash != 0 && tpmHash[op.spec.hash] != 0:
		return tpmSign(tpm2.TPMAlgRSASSA, op.spec.hash, input), nil
	case op.spec.hash != 0: // a hash the TPM lacks (SHA-224)
		input = append(bytes.Clone(digestInfo[op.spec.hash]), input...)
	}
	// CKM_RSA_PKCS: the input is normally a DigestInfo the TPM can sign itself.
	for h, prefix := range digestInfo {
		if len(input) == len(prefix)+h.Size() && bytes.HasPrefix(input, prefix) && tpmHash[h] != 0 {
			return tpmSign(tpm2.TPMAlgRSASSA, h, input[len(prefix):]), nil
		}
	}
	if len(input) > k-11 {
		return nil, ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	block := make([]byte, k)
	block[1] = 1
	for i := 2; i < k-len(input)-1; i++ {
		block[i] = 0xff
	}
	copy(block[k-len(input):], input)
	return raw(block), nil
}

// sized applies the output-length convention before any work is done: a
// length query, or a buffer smaller than n, is answered with n alone.
func sized(n, outCap int, query bool) (answered bool, err error) {
	if query {
		return true, nil
	}
	if outCap < n {
		return true, ck.TooSmall(n)
	}
	return false, nil
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// VerifyInit starts verification with a public (or private) key object;
// verification runs in software on the public key.
func (l *Library) VerifyInit(h uint64, m Mechanism, key uint64) error {
	s, o, err := l.keyOpInit(h, key, func(s *Session) bool { return s.verify != nil })
	if err != nil {
		return err
	}
	usage := ck.CKA_VERIFY
	switch o.class() {
	case ck.CKO_PRIVATE_KEY:
		usage = ck.CKA_SIGN
	case ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY:
	default:
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	spec, pss, err := checkMech(m, o, usage)
	if err != nil {
		return err
	}
	op := &verifyOp{input: newInput(spec), spec: spec, pss: pss}
	if spec.mac != 0 {
		if o.key == nil {
			return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
		}
		op.mac = o
	} else if op.pub, err = o.publicKey(); err != nil {
		return err
	}
	s.mu.Lock()
	s.verify = op
	s.mu.Unlock()
	return nil
}

func (l *Library) verifyOp(h uint64) (*Session, *verifyOp, error) {
	return activeOp(l, h, func(s *Session) *verifyOp { return s.verify })
}

// Verify checks sig over data in one part.
func (l *Library) Verify(h uint64, data, sig []byte) error {
	s, op, err := l.verifyOp(h)
	if err != nil {
		return err
	}
	op.write(data)
	return l.finishVerify(s, op, sig)
}

// VerifyUpdate feeds data to a multi-part verification.
func (l *Library) VerifyUpdate(h uint64, data []byte) error {
	s, op, err := l.verifyOp(h)
	if err != nil {
		return err
	}
	op.write(data)
	if op.h == nil && len(op.buf) > op.spec.maxInput() {
		s.mu.Lock()
		s.verify = nil
		s.mu.Unlock()
		return ck.E(ck.CKR_DATA_LEN_RANGE)
	}
	return nil
}

// VerifyFinal checks sig over everything fed.
func (l *Library) VerifyFinal(h uint64, sig []byte) error {
	s, op, err := l.verifyOp(h)
	if err != nil {
		return err
	}
	return l.finishVerify(s, op, sig)
}

func (l *Library) finishVerify(s *Session, op *verifyOp, sig []byte) error {
	s.mu.Lock()
	s.verify = nil
	s.mu.Unlock()
	input := op.value()
	bad := ck.E(ck.CKR_SIGNATURE_INVALID)
	if op.mac != nil {
		if len(sig) != op.spec.mac.Size() {
			return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
		}
		v, err := l.run(s.Handle, hmacJob(op.mac.key, op.spec.mac, input))
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(v.([]byte), sig) != 1 {
			return bad
		}
		return nil
	}
	switch pub := op.pub.(type) {
	case *ecdsa.PublicKey:
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
		}
		if !ecdsa.Verify(pub, input, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return bad
		}
	case *rsa.PublicKey:
		if len(sig) != pub.Size() {
			return ck.E(ck.CKR_SIGNATURE_LEN_RANGE)
		}
		var err error
		switch {
		case op.spec.raw:
			m := new(big.Int).Exp(new(big.Int).SetBytes(sig), big.NewInt(int64(pub.E)), pub.N)
			if !bytes.Equal(leftPad(m.Bytes(), pub.Size()), leftPad(input, pub.Size())) {
				err = bad
			}
		case op.spec.pss:
			err = rsa.VerifyPSS(pub, op.pss.hash, input, sig, &rsa.PSSOptions{SaltLength: op.pss.sLen})
		case op.spec.hash != 0:
			err = rsa.VerifyPKCS1v15(pub, op.spec.hash, input, sig)
		default:
			err = rsa.VerifyPKCS1v15(pub, 0, input, sig)
		}
		if err != nil {
			return bad
		}
	default:
		return ck.E(ck.CKR_KEY_TYPE_INCONSISTENT)
	}
	return nil
}
