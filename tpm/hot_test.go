package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
)

// recorder keeps the last command and answers with a canned response (a
// test of marshalling, where no TPM can show what bytes were sent).
type recorder struct {
	cmd, rsp []byte
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	r.cmd = append([]byte(nil), cmd...)
	return r.rsp, nil
}

// pwRsp is a success response with a password session around params.
func pwRsp(params []byte) []byte {
	b := []byte{0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(params)))
	b = append(b, params...)
	b = append(b, 0, 0, 1, 0, 0)
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	return b
}

// The hand-marshalled commands are byte for byte what go-tpm sends, and
// their responses read back what go-tpm marshals.
func TestHotCommandsMatchGoTPM(t *testing.T) {
	h := tpm2.TPMHandle(0x80000001)
	pw := []byte("key-auth")
	digest := bytes.Repeat([]byte{7}, 32)
	ecc := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: []byte{1, 2}}, SignatureS: tpm2.TPM2BECCParameter{Buffer: []byte{3}}})}
	rsa := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSAPSS, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSAPSS,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA384, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: []byte{9, 9, 9}}})}

	for _, tc := range []struct {
		scheme, hash tpm2.TPMAlgID
		sig          tpm2.TPMTSignature
	}{
		{tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, ecc},
		{tpm2.TPMAlgRSAPSS, tpm2.TPMAlgSHA384, rsa},
		{tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA512, rsa},
		{tpm2.TPMAlgNull, tpm2.TPMAlgNull, ecc},
	} {
		want := &recorder{rsp: pwRsp(tpm2.Marshal(tc.sig))}
		scheme := tpm2.TPMTSigScheme{Scheme: tc.scheme}
		if tc.scheme != tpm2.TPMAlgNull {
			scheme.Details = tpm2.NewTPMUSigScheme(tc.scheme, &tpm2.TPMSSchemeHash{HashAlg: tc.hash})
		}
		ref, err := tpm2.Sign{KeyHandle: tpm2.AuthHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: []byte{0, 0x0b, 1}}, Auth: tpm2.PasswordAuth(pw)}, Digest: tpm2.TPM2BDigest{Buffer: digest},
			InScheme: scheme, Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck}}.Execute(want)
		require.NoError(t, err)

		got := &recorder{rsp: want.rsp}
		e := NewEngine(got, 3)
		typed := SigScheme{Alg: tc.scheme, Hash: tc.hash}
		require.NoError(t, typed.check())
		require.Equal(t, tpm2.Marshal(scheme), tpm2.Marshal(typed.inScheme()), "the policy path's scheme")
		sig, err := e.sign(h, pw, digest, typed)
		require.NoError(t, err)
		require.Equal(t, want.cmd, got.cmd)
		require.Equal(t, tpm2.Marshal(ref.Signature), tpm2.Marshal(*sig))
	}

	want := &recorder{rsp: pwRsp(tpm2.Marshal(tpm2.TPM2BPublicKeyRSA{Buffer: []byte("plain")}))}
	_, err := tpm2.RSADecrypt{KeyHandle: tpm2.AuthHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: []byte{0, 0x0b, 1}}, Auth: tpm2.PasswordAuth(pw)}, CipherText: tpm2.TPM2BPublicKeyRSA{Buffer: digest},
		InScheme: tpm2.TPMTRSADecrypt{Scheme: tpm2.TPMAlgNull}}.Execute(want)
	require.NoError(t, err)
	got := &recorder{rsp: want.rsp}
	out, err := NewEngine(got, 3).rsaDecryptRaw(h, pw, digest)
	require.NoError(t, err)
	require.Equal(t, want.cmd, got.cmd)
	require.Equal(t, []byte("plain"), out)

	want = &recorder{rsp: pwRsp(tpm2.Marshal(tpm2.TPM2BDigest{Buffer: []byte("mac")}))}
	_, err = tpm2.Hmac{Handle: tpm2.AuthHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: []byte{0, 0x0b, 1}}, Auth: tpm2.PasswordAuth(nil)}, Buffer: tpm2.TPM2BMaxBuffer{Buffer: digest}, HashAlg: tpm2.TPMAlgSHA256}.Execute(want)
	require.NoError(t, err)
	got = &recorder{rsp: want.rsp}
	out, err = NewEngine(got, 3).hmac(h, nil, digest, tpm2.TPMAlgSHA256)
	require.NoError(t, err)
	require.Equal(t, want.cmd, got.cmd)
	require.Equal(t, []byte("mac"), out)
}

// A response code comes back as go-tpm gives it; a response cut short or
// padded at any byte, or with a session area that is not a password
// session's, is malformed: never a panic, never a signature.
func TestHotResponsesMalformed(t *testing.T) {
	rc := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22}
	_, err := NewEngine(&recorder{rsp: rc}, 3).sign(1, nil, nil, SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	require.ErrorIs(t, err, tpm2.TPMRC(0x922))

	good := pwRsp(tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: []byte{1}}, SignatureS: tpm2.TPM2BECCParameter{Buffer: []byte{2}}})}))
	send := func(b []byte) (*tpm2.TPMTSignature, error) {
		// The header's size is made right, so only the body is wrong.
		if len(b) >= 6 {
			binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
		}
		return NewEngine(&recorder{rsp: b}, 3).sign(1, nil, nil, SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	}
	cut := [][]byte{append(append([]byte(nil), good...), 0)}
	for n := 0; n < len(good); n++ {
		cut = append(cut, append([]byte(nil), good[:n]...))
	}
	huge := append([]byte(nil), good...) // a parameter size with its top bit set
	binary.BigEndian.PutUint32(huge[10:14], 0x80000010)
	cut = append(cut, huge)
	for _, b := range cut {
		_, err := send(b)
		require.True(t, errors.Is(err, errMalformed), "%x: %v", b, err)
	}
	for i := 10; i < len(good); i++ { // every byte after the header, changed
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		// A changed bit inside r, s, a hash or the attributes is still
		// well-formed; anything else is malformed.
		if sig, err := send(b); err != nil {
			require.True(t, errors.Is(err, errMalformed), "%x: %v", b, err)
		} else {
			require.NotNil(t, sig)
		}
	}
}

// SignBytes' halves: r and s are left-padded to the curve's size, a TPM's
// leading zeros dropped, and a half longer than the curve's is a malformed
// answer, never a panic or a truncated signature.
func TestECDSABytes(t *testing.T) {
	out, err := ecdsaBytes([]byte{0, 0, 1, 2}, []byte{3}, 8)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 1, 2, 0, 0, 0, 3}, out)
	_, err = ecdsaBytes([]byte{1, 2, 3, 4, 5}, []byte{3}, 8)
	require.ErrorIs(t, err, errMalformed)
	require.Equal(t, []byte{0, 0, 7}, leftPad([]byte{7}, 3))
}
