package mech

import "github.com/google/go-tpm/tpm2"

// TPMCall is what an operation asks of the TPM, as plain data; tpmtoken
// runs it on the TPM worker with the key.
type TPMCall interface{ tpmCall() }

// SignCall is TPM2_Sign of Digest with the scheme and hash given. The
// result is shaped to Len bytes: r||s for ECDSA, the left-padded
// signature for RSA. A *SignCall is the TPMCall (see Signature.planned).
type SignCall struct {
	Scheme tpm2.TPMAlgID // TPM_ALG_ECDSA, TPM_ALG_RSASSA, TPM_ALG_RSAPSS
	Hash   tpm2.TPMAlgID
	Digest []byte
	Len    int
}

// RSARawCall is the private RSA operation on Block (TPM2_RSA_Decrypt with
// the null scheme), the result left-padded to Len bytes.
type RSARawCall struct {
	Block []byte
	Len   int
}

// HMACCall is TPM2_HMAC (or an HMAC sequence) of Data.
type HMACCall struct {
	Hash tpm2.TPMAlgID
	Data []byte
}

func (*SignCall) tpmCall()  {}
func (RSARawCall) tpmCall() {}
func (HMACCall) tpmCall()   {}
