package tpm

import (
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// PublicKey is the Go public key (*rsa.PublicKey, *ecdsa.PublicKey) of an
// RSA or ECC public area: the one place a TPM public area becomes a key
// that Go's crypto can verify with (attestation, policy approvals).
func PublicKey(p *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch p.Type {
	case tpm2.TPMAlgRSA:
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, err
		}
		return tpm2.RSAPub(parms, n)
	case tpm2.TPMAlgECC:
		parms, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, err
		}
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, err
		}
		return tpm2.ECDSAPub(parms, pt)
	}
	return nil, fmt.Errorf("public area of type %#x", p.Type)
}
