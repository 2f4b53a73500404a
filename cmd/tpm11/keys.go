package main

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// labelled adds CKA_ID and, if given, CKA_LABEL to a template.
func labelled(t []tpmtoken.Attr, id []byte, label string) []tpmtoken.Attr {
	t = append(t, attr(ck.CKA_ID, id))
	if label != "" {
		t = append(t, attr(ck.CKA_LABEL, []byte(label)))
	}
	return t
}

func cmdKeygen(args []string) error {
	k := newKeyFlags("keygen")
	typ := k.fs.String("type", "ec:p256", "ec:p256|ec:p384|ec:p521|rsa:2048|rsa:3072")
	id, err := k.parse(args, true)
	if err != nil {
		return err
	}
	pubT := []tpmtoken.Attr{attr(ck.CKA_TOKEN, yes)}
	privT := []tpmtoken.Attr{attr(ck.CKA_TOKEN, yes)}
	m := tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}
	switch *typ {
	case "ec:p256", "ec:p384", "ec:p521":
		pubT = append(pubT, attr(ck.CKA_EC_PARAMS, tpmtoken.CurveNamed(strings.TrimPrefix(*typ, "ec:")).Params))
		privT = append(privT, attr(ck.CKA_DERIVE, yes))
	case "rsa:2048", "rsa:3072", "rsa:4096":
		m.Type = ck.CKM_RSA_PKCS_KEY_PAIR_GEN
		bits := map[string]uint64{"rsa:2048": 2048, "rsa:3072": 3072, "rsa:4096": 4096}[*typ]
		pubT = append(pubT, attr(ck.CKA_MODULUS_BITS, ulong(bits)), attr(ck.CKA_ENCRYPT, yes))
		privT = append(privT, attr(ck.CKA_DECRYPT, yes))
	default:
		return fmt.Errorf("unknown -type %q", *typ)
	}
	return withSession(*k.slot, true, func(l *tpmtoken.Library, h uint64) error {
		pub, _, err := l.GenerateKeyPair(h, m, labelled(pubT, id, *k.label), labelled(privT, id, *k.label))
		if err != nil {
			return err
		}
		return printPEM(l, h, pub, ck.CKA_PUBLIC_KEY_INFO, "PUBLIC KEY")
	})
}

func printPEM(l *tpmtoken.Library, h, obj uint64, a ck.AttributeType, kind string) error {
	res, err := l.GetAttributeValue(h, obj, []ck.AttributeType{a})
	if err != nil {
		return err
	}
	if res[0].RV != ck.CKR_OK {
		return fmt.Errorf("no %s: %s", kind, ck.RVName(res[0].RV))
	}
	return pem.Encode(os.Stdout, &pem.Block{Type: kind, Bytes: res[0].Value})
}

// cmdImport puts a PEM private key into the TPM (C_CreateObject, which
// wraps it with TPM2_Import), with its public key and any certificate in
// the file as objects of the same ID, as clients expect to find them.
func cmdImport(args []string) error {
	k := newKeyFlags("import")
	id, err := k.parse(args, true)
	if err != nil {
		return err
	}
	if k.fs.NArg() != 1 {
		return errors.New("name one PEM file")
	}
	data, err := os.ReadFile(k.fs.Arg(0))
	if err != nil {
		return err
	}
	var key any
	var certs [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "CERTIFICATE":
			certs = append(certs, b.Bytes)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", b.Type, err)
		}
	}
	if key == nil {
		return errors.New("no private key in the file (PEM PKCS#8, PKCS#1 or SEC1; encrypted keys: decrypt them first)")
	}
	privT := []tpmtoken.Attr{attr(ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)), attr(ck.CKA_TOKEN, yes), attr(ck.CKA_SIGN, yes)}
	pubT := []tpmtoken.Attr{attr(ck.CKA_CLASS, ulong(ck.CKO_PUBLIC_KEY)), attr(ck.CKA_TOKEN, yes), attr(ck.CKA_VERIFY, yes)}
	switch kk := key.(type) {
	case *rsa.PrivateKey:
		kk.Precompute()
		e := big.NewInt(int64(kk.E)).Bytes()
		privT = append(privT, attr(ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)), attr(ck.CKA_DECRYPT, yes),
			attr(ck.CKA_MODULUS, kk.N.Bytes()), attr(ck.CKA_PUBLIC_EXPONENT, e),
			attr(ck.CKA_PRIVATE_EXPONENT, kk.D.Bytes()), attr(ck.CKA_PRIME_1, kk.Primes[0].Bytes()),
			attr(ck.CKA_PRIME_2, kk.Primes[1].Bytes()))
		pubT = append(pubT, attr(ck.CKA_KEY_TYPE, ulong(ck.CKK_RSA)), attr(ck.CKA_ENCRYPT, yes),
			attr(ck.CKA_MODULUS, kk.N.Bytes()), attr(ck.CKA_PUBLIC_EXPONENT, e))
	case *ecdsa.PrivateKey:
		c := tpmtoken.CurveOfGo(kk.Curve)
		if c == nil {
			return fmt.Errorf("curve %s is not supported", kk.Curve.Params().Name)
		}
		ecdhKey, err := kk.ECDH()
		if err != nil {
			return err
		}
		point, _ := asn1.Marshal(ecdhKey.PublicKey().Bytes())
		privT = append(privT, attr(ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)), attr(ck.CKA_DERIVE, yes),
			attr(ck.CKA_EC_PARAMS, c.Params), attr(ck.CKA_VALUE, ecdhKey.Bytes()))
		pubT = append(pubT, attr(ck.CKA_KEY_TYPE, ulong(ck.CKK_EC)), attr(ck.CKA_EC_PARAMS, c.Params), attr(ck.CKA_EC_POINT, point))
	default:
		return fmt.Errorf("%T keys are not supported", key)
	}
	return withSession(*k.slot, true, func(l *tpmtoken.Library, h uint64) error {
		if _, err := l.CreateObject(h, labelled(privT, id, *k.label)); err != nil {
			return fmt.Errorf("private key: %w", err)
		}
		if _, err := l.CreateObject(h, labelled(pubT, id, *k.label)); err != nil {
			return fmt.Errorf("public key: %w", err)
		}
		for _, c := range certs {
			t := []tpmtoken.Attr{attr(ck.CKA_CLASS, ulong(ck.CKO_CERTIFICATE)), attr(ck.CKA_TOKEN, yes),
				attr(ck.CKA_CERTIFICATE_TYPE, ulong(ck.CKC_X_509)), attr(ck.CKA_VALUE, c)}
			if _, err := l.CreateObject(h, labelled(t, id, *k.label)); err != nil {
				return fmt.Errorf("certificate: %w", err)
			}
		}
		fmt.Printf("imported into the TPM: private key, public key, %d certificate(s), id %x\n", len(certs), id)
		return nil
	})
}

func cmdExport(args []string) error {
	k := newKeyFlags("export")
	cert := k.fs.Bool("cert", false, "export the certificate instead of the public key")
	id, err := k.parse(args, true)
	if err != nil {
		return err
	}
	return withSession(*k.slot, false, func(l *tpmtoken.Library, h uint64) error {
		class, a, kind := ck.CKO_PUBLIC_KEY, ck.CKA_PUBLIC_KEY_INFO, "PUBLIC KEY"
		if *cert {
			class, a, kind = ck.CKO_CERTIFICATE, ck.CKA_VALUE, "CERTIFICATE"
		}
		objs, err := find(l, h, attr(ck.CKA_CLASS, ulong(class)), attr(ck.CKA_ID, id))
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("no %s with id %x", strings.ToLower(kind), id)
		}
		return printPEM(l, h, objs[0], a, kind)
	})
}

func cmdDelete(args []string) error {
	k := newKeyFlags("delete")
	id, err := k.parse(args, true)
	if err != nil {
		return err
	}
	return withSession(*k.slot, true, func(l *tpmtoken.Library, h uint64) error {
		objs, err := find(l, h, attr(ck.CKA_ID, id))
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := l.DestroyObject(h, o); err != nil {
				return err
			}
		}
		fmt.Printf("destroyed %d object(s) with id %x\n", len(objs), id)
		return nil
	})
}

var classNames = map[ck.ObjectClass]string{ck.CKO_DATA: "data", ck.CKO_CERTIFICATE: "certificate",
	ck.CKO_PUBLIC_KEY: "public key", ck.CKO_PRIVATE_KEY: "private key", ck.CKO_SECRET_KEY: "secret key"}
var keyNames = map[ck.KeyType]string{ck.CKK_RSA: "RSA", ck.CKK_EC: "EC", ck.CKK_AES: "AES", ck.CKK_GENERIC_SECRET: "generic secret"}

func cmdList(args []string) error {
	k := newKeyFlags("list")
	if _, err := k.parse(args, false); err != nil {
		return err
	}
	_, login := os.LookupEnv("TPM11_PIN")
	return withSession(*k.slot, login, func(l *tpmtoken.Library, h uint64) error {
		objs, err := find(l, h)
		if err != nil {
			return err
		}
		types := []ck.AttributeType{ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_ID, ck.CKA_LABEL, ck.CKA_LOCAL,
			ck.CKA_MODULUS_BITS, ck.CKA_EC_PARAMS, ck.CKA_VALUE_LEN}
		for _, o := range objs {
			res, err := l.GetAttributeValue(h, o, types)
			if err != nil {
				return err
			}
			val := func(i int) []byte {
				if res[i].RV != ck.CKR_OK {
					return nil
				}
				return res[i].Value
			}
			u := func(i int) uint64 {
				if len(val(i)) != 8 {
					return ^uint64(0)
				}
				return binary.NativeEndian.Uint64(val(i))
			}
			line := classNames[ck.ObjectClass(u(0))]
			if kn, ok := keyNames[ck.KeyType(u(1))]; ok {
				line += " " + kn
			}
			switch c := tpmtoken.CurveOf(val(6)); {
			case c != nil:
				line += fmt.Sprintf(" P-%d", c.Bits)
			case u(5) != ^uint64(0):
				line += fmt.Sprintf(" %d", u(5))
			case u(7) != ^uint64(0):
				line += fmt.Sprintf(" %d bytes", u(7))
			}
			if len(val(4)) == 1 && ck.ObjectClass(u(0)) == ck.CKO_PRIVATE_KEY {
				line += map[bool]string{true: ", made in the TPM", false: ", imported"}[val(4)[0] == 1]
			}
			fmt.Printf("%-40s id %-16s label %q\n", line, hex.EncodeToString(val(2)), val(3))
		}
		return nil
	})
}
