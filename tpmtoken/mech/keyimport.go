package mech

import (
	"math/big"

	"github.com/tpm11/tpm11/ck"
)

// RSAImport is an RSA private key as TPM2_Import takes it: the modulus,
// the public exponent and one prime.
type RSAImport struct {
	N     *big.Int
	E     uint32
	Prime *big.Int
}

// ParseRSAImport checks the private-key attributes of an RSA import. The
// TPM keeps one prime; without the primes (the spec's minimal set is the
// modulus and the private exponent) the modulus is factored from d and e.
func ParseRSAImport(n, e, d, p []byte) (RSAImport, error) {
	num := func(b []byte) *big.Int { return new(big.Int).SetBytes(b) }
	N, E := num(n), num(e)
	if N.Sign() == 0 || E.Sign() == 0 {
		return RSAImport{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	if !E.IsUint64() || E.Uint64() > 1<<32-1 || E.Bit(0) == 0 || E.Uint64() < 3 {
		return RSAImport{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "public exponent")
	}
	P := num(p)
	if P.Sign() == 0 {
		D := num(d)
		if D.Sign() == 0 {
			return RSAImport{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
		}
		P = factorModulus(N, E, D)
	}
	if P == nil || P.Cmp(big.NewInt(1)) <= 0 || new(big.Int).Mod(N, P).Sign() != 0 || P.Cmp(N) == 0 {
		return RSAImport{}, ck.Errorf(ck.CKR_ATTRIBUTE_VALUE_INVALID, "the private key does not match its modulus")
	}
	return RSAImport{N: N, E: uint32(E.Uint64()), Prime: P}, nil
}

// factorModulus recovers a prime factor of n from e and d (the method of
// RFC 8017's note on CRT recovery: d·e−1 = 2^t·r; a random g^r's square-root
// chain meets a non-trivial root of 1 with probability ≥ 1/2 per g).
func factorModulus(n, e, d *big.Int) *big.Int {
	one := big.NewInt(1)
	nMinus1 := new(big.Int).Sub(n, one)
	k := new(big.Int).Sub(new(big.Int).Mul(d, e), one)
	if k.Sign() <= 0 {
		return nil
	}
	t := 0
	r := new(big.Int).Set(k)
	for r.Bit(0) == 0 {
		r.Rsh(r, 1)
		t++
	}
	for g := int64(2); g < 200; g++ {
		x := new(big.Int).Exp(big.NewInt(g), r, n)
		for i := 0; i < t; i++ {
			y := new(big.Int).Exp(x, big.NewInt(2), n)
			if y.Cmp(one) == 0 && x.Cmp(one) != 0 && x.Cmp(nMinus1) != 0 {
				return new(big.Int).GCD(nil, nil, new(big.Int).Sub(x, one), n)
			}
			x = y
		}
	}
	return nil
}

// ECImport is an EC private key as TPM2_Import takes it.
type ECImport struct {
	Curve *Curve
	D     []byte // the scalar, Curve.Bytes long
	X, Y  []byte // the public point, computed
}

// ParseECImport checks an EC private key (CKA_EC_PARAMS and CKA_VALUE)
// and computes its public point, so a template needs nothing else.
func ParseECImport(params, value []byte) (ECImport, error) {
	c, err := CurveFor(params)
	if err != nil {
		return ECImport{}, err
	}
	if len(value) == 0 {
		return ECImport{}, ck.E(ck.CKR_TEMPLATE_INCOMPLETE)
	}
	d := new(big.Int).SetBytes(value)
	if (d.BitLen()+7)/8 > c.Bytes {
		return ECImport{}, ck.E(ck.CKR_ATTRIBUTE_VALUE_INVALID)
	}
	db := d.FillBytes(make([]byte, c.Bytes))
	pt, err := c.publicOf(db) // 04 || X || Y
	if err != nil {
		return ECImport{}, ck.Wrap(ck.CKR_ATTRIBUTE_VALUE_INVALID, err)
	}
	return ECImport{Curve: c, D: db, X: pt[1 : 1+c.Bytes], Y: pt[1+c.Bytes:]}, nil
}
