// Command pqctool is the independent side of testdata/c/pqc_test.c: it
// checks ML-DSA signatures with cloudflare/circl and encapsulates to
// ML-KEM public keys with Go's crypto/mlkem (circl for ML-KEM-512), from
// the SubjectPublicKeyInfo the token exports. No tpm11 code is used.
//
//	pqctool verify SPKI MSG CTX SIG   exit 0 if the signature verifies, 1 if not
//	pqctool encap SPKI CT SS          writes a ciphertext and its shared secret
//	pqctool name PEM                  prints the ML-DSA scheme of a PEM public key (circl)
package main

import (
	"crypto/mlkem"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pqctool:", err)
		os.Exit(1)
	}
}

func read(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pqctool:", err)
		os.Exit(2)
	}
	return b
}

func run(args []string) error {
	switch {
	case len(args) == 5 && args[0] == "verify":
		pk, err := pki.UnmarshalPKIXPublicKey(read(args[1]))
		if err != nil {
			return err
		}
		if !pk.Scheme().Verify(pk, read(args[2]), read(args[4]), &sign.SignatureOpts{Context: string(read(args[3]))}) {
			return fmt.Errorf("%s signature does not verify", pk.Scheme().Name())
		}
		return nil
	case len(args) == 4 && args[0] == "encap":
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(read(args[1]), &spki); err != nil {
			return err
		}
		ek := spki.PublicKey.Bytes
		var ss, ct []byte
		switch spki.Algorithm.Algorithm.String() {
		case "2.16.840.1.101.3.4.4.1":
			pk, err := mlkem512.Scheme().UnmarshalBinaryPublicKey(ek)
			if err != nil {
				return err
			}
			if ct, ss, err = mlkem512.Scheme().Encapsulate(pk); err != nil {
				return err
			}
		case "2.16.840.1.101.3.4.4.2":
			k, err := mlkem.NewEncapsulationKey768(ek)
			if err != nil {
				return err
			}
			ss, ct = k.Encapsulate()
		case "2.16.840.1.101.3.4.4.3":
			k, err := mlkem.NewEncapsulationKey1024(ek)
			if err != nil {
				return err
			}
			ss, ct = k.Encapsulate()
		default:
			return fmt.Errorf("not an ML-KEM key: %v", spki.Algorithm.Algorithm)
		}
		if err := os.WriteFile(args[2], ct, 0o600); err != nil {
			return err
		}
		return os.WriteFile(args[3], ss, 0o600)
	case len(args) == 2 && args[0] == "name":
		b, _ := pem.Decode(read(args[1]))
		if b == nil || b.Type != "PUBLIC KEY" {
			return fmt.Errorf("%s: no PUBLIC KEY PEM block", args[1])
		}
		pk, err := pki.UnmarshalPKIXPublicKey(b.Bytes)
		if err != nil {
			return err
		}
		fmt.Println(pk.Scheme().Name())
		return nil
	}
	return fmt.Errorf("usage: pqctool verify SPKI MSG CTX SIG | encap SPKI CT SS | name PEM")
}
