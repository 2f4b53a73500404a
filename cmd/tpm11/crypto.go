package main

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// sign, verify, encrypt, decrypt with a token key from the command line,
// and the mechanisms the token offers: pkcs11-tool's --sign, --verify,
// --encrypt, --decrypt and -M, with the key named as everywhere else in
// tpm11 and the mechanism by pkcs11-tool's name.

// mechNames are pkcs11-tool's names.
var mechNames = map[ck.MechType]string{
	ck.CKM_RSA_PKCS_KEY_PAIR_GEN: "RSA-PKCS-KEY-PAIR-GEN", ck.CKM_RSA_PKCS: "RSA-PKCS", ck.CKM_RSA_X_509: "RSA-X-509",
	ck.CKM_SHA1_RSA_PKCS: "SHA1-RSA-PKCS", ck.CKM_RSA_PKCS_OAEP: "RSA-PKCS-OAEP", ck.CKM_RSA_PKCS_PSS: "RSA-PKCS-PSS",
	ck.CKM_SHA1_RSA_PKCS_PSS: "SHA1-RSA-PKCS-PSS", ck.CKM_SHA224_RSA_PKCS: "SHA224-RSA-PKCS", ck.CKM_SHA256_RSA_PKCS: "SHA256-RSA-PKCS",
	ck.CKM_SHA384_RSA_PKCS: "SHA384-RSA-PKCS", ck.CKM_SHA512_RSA_PKCS: "SHA512-RSA-PKCS", ck.CKM_SHA224_RSA_PKCS_PSS: "SHA224-RSA-PKCS-PSS",
	ck.CKM_SHA256_RSA_PKCS_PSS: "SHA256-RSA-PKCS-PSS", ck.CKM_SHA384_RSA_PKCS_PSS: "SHA384-RSA-PKCS-PSS", ck.CKM_SHA512_RSA_PKCS_PSS: "SHA512-RSA-PKCS-PSS",
	ck.CKM_SHA_1: "SHA-1", ck.CKM_SHA224: "SHA224", ck.CKM_SHA256: "SHA256", ck.CKM_SHA384: "SHA384", ck.CKM_SHA512: "SHA512",
	ck.CKM_EC_KEY_PAIR_GEN: "ECDSA-KEY-PAIR-GEN", ck.CKM_ECDSA: "ECDSA", ck.CKM_ECDSA_SHA1: "ECDSA-SHA1", ck.CKM_ECDSA_SHA224: "ECDSA-SHA224",
	ck.CKM_ECDSA_SHA256: "ECDSA-SHA256", ck.CKM_ECDSA_SHA384: "ECDSA-SHA384", ck.CKM_ECDSA_SHA512: "ECDSA-SHA512", ck.CKM_ECDH1_DERIVE: "ECDH1-DERIVE",
	ck.CKM_GENERIC_SECRET_KEY_GEN: "GENERIC-SECRET-KEY-GEN", ck.CKM_AES_KEY_GEN: "AES-KEY-GEN", ck.CKM_AES_ECB: "AES-ECB", ck.CKM_AES_CBC: "AES-CBC",
	ck.CKM_AES_CBC_PAD: "AES-CBC-PAD", ck.CKM_AES_CTR: "AES-CTR", ck.CKM_AES_OFB: "AES-OFB", ck.CKM_AES_CFB128: "AES-CFB128",
	ck.CKM_AES_KEY_WRAP: "AES-KEY-WRAP", ck.CKM_AES_KEY_WRAP_KWP: "AES-KEY-WRAP-PAD", ck.CKM_SHA_1_HMAC: "SHA-1-HMAC",
	ck.CKM_SHA256_HMAC: "SHA256-HMAC", ck.CKM_SHA384_HMAC: "SHA384-HMAC", ck.CKM_SHA512_HMAC: "SHA512-HMAC",
	ck.CKM_ML_DSA_KEY_PAIR_GEN: "ML-DSA-KEY-PAIR-GEN", ck.CKM_ML_DSA: "ML-DSA", ck.CKM_ML_KEM_KEY_PAIR_GEN: "ML-KEM-KEY-PAIR-GEN", ck.CKM_ML_KEM: "ML-KEM",
}

func mechName(m ck.MechType) string {
	if n, ok := mechNames[m]; ok {
		return n
	}
	return fmt.Sprintf("0x%08x", uint64(m))
}

// parseMech takes pkcs11-tool's name (any case, CKM_ prefix and '_' allowed)
// or a number.
func parseMech(s string) (ck.MechType, error) {
	n := strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(s, "CKM_"), "ckm_"))
	n = strings.ReplaceAll(n, "_", "-")
	for m, name := range mechNames {
		if name == n || strings.ReplaceAll(name, "SHA-1", "SHA1") == n {
			return m, nil
		}
	}
	var v uint64
	if _, err := fmt.Sscanf(s, "0x%x", &v); err == nil {
		return ck.MechType(v), nil
	}
	return 0, usagef("unknown mechanism %q (tpm11 mechanisms lists them)", s)
}

var mechHash = map[ck.MechType]ck.MechType{
	ck.CKM_SHA1_RSA_PKCS_PSS: ck.CKM_SHA_1, ck.CKM_SHA224_RSA_PKCS_PSS: ck.CKM_SHA224, ck.CKM_SHA256_RSA_PKCS_PSS: ck.CKM_SHA256,
	ck.CKM_SHA384_RSA_PKCS_PSS: ck.CKM_SHA384, ck.CKM_SHA512_RSA_PKCS_PSS: ck.CKM_SHA512,
}

var hashMGF = map[ck.MechType]struct {
	mgf  ck.MGF
	size int
}{
	ck.CKM_SHA_1: {ck.CKG_MGF1_SHA1, 20}, ck.CKM_SHA224: {ck.CKG_MGF1_SHA224, 28}, ck.CKM_SHA256: {ck.CKG_MGF1_SHA256, 32},
	ck.CKM_SHA384: {ck.CKG_MGF1_SHA384, 48}, ck.CKM_SHA512: {ck.CKG_MGF1_SHA512, 64},
}

// cryptoFlags are what sign/verify/encrypt/decrypt share.
type cryptoFlags struct {
	sel                         objectFlags
	mech, hash, in, out, iv, sf string
	der                         bool
}

func (f *cryptoFlags) register(c *cobra.Command) {
	f.sel.register(c, false)
	fl := c.Flags()
	fl.StringVarP(&f.mech, "mechanism", "m", "", "the mechanism, by pkcs11-tool's name (tpm11 mechanisms); default: ECDSA-SHA256, SHA256-RSA-PKCS, RSA-PKCS-OAEP, AES-CBC-PAD or SHA256-HMAC by key type")
	fl.StringVar(&f.hash, "hash", "sha256", "the hash of RSA-PKCS-OAEP and RSA-PKCS-PSS (and their MGF1): sha1, sha224, sha256, sha384, sha512")
	fl.StringVarP(&f.in, "input", "i", "-", "read the data from this file (- is standard input)")
	fl.StringVarP(&f.out, "output", "o", "-", "write the result to this file (- is standard output)")
	fl.StringVar(&f.iv, "iv", "", "the IV in hex (AES-CBC, AES-CBC-PAD, AES-OFB, AES-CFB128; AES-CTR: the counter block)")
	_ = c.RegisterFlagCompletionFunc("mechanism", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var n []string
		for _, v := range mechNames {
			n = append(n, v)
		}
		sort.Strings(n)
		return n, cobra.ShellCompDirectiveNoFileComp
	})
}

// stdinPIN refuses to take the PIN from standard input when it carries
// the data.
func (f *cryptoFlags) stdinPIN(g *globals, uri *p11uri) error {
	if f.in != "-" || interactive() || g.pinFile != "" {
		return nil
	}
	if _, ok := os.LookupEnv("TPM11_PIN"); ok {
		return nil
	}
	if _, ok, _ := uriPIN(uri); ok {
		return nil
	}
	return usagef("standard input holds the data: give the PIN with --pin-file or TPM11_PIN, or the data with -i FILE")
}

// keyAndData is what sign, encrypt and decrypt are given: the key named
// (required), a PIN not expected on the standard input that carries the
// data, and the data.
func (f *cryptoFlags) keyAndData(g *globals, args []string) (*p11uri, []tpmtoken.Attr, []byte, error) {
	uri, tmpl, err := f.sel.selection(args)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(tmpl) == 0 {
		return nil, nil, nil, usagef("name the key: --id, --label or a pkcs11: URI")
	}
	if err := f.stdinPIN(g, uri); err != nil {
		return nil, nil, nil, err
	}
	data, err := readData(f.in)
	if err != nil {
		return nil, nil, nil, err
	}
	return uri, tmpl, data, nil
}

// maxCryptoInput bounds what is read: one-shot operations hold it whole.
const maxCryptoInput = 64 << 20

func readData(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCryptoInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCryptoInput {
		return nil, fmt.Errorf("the input is larger than %d MiB", maxCryptoInput>>20)
	}
	return b, nil
}

func writeData(path string, b []byte, w io.Writer) error {
	if path == "-" {
		_, err := w.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// key finds the one object of class among the selection.
func (f *cryptoFlags) key(c *ctx, tmpl []tpmtoken.Attr, classes ...ck.ObjectClass) (object, error) {
	objs, err := c.objects(tmpl...)
	if err != nil {
		return object{}, err
	}
	if err := oneKey(objs); err != nil {
		return object{}, err
	}
	for _, cl := range classes {
		for _, o := range objs {
			if o.class == cl {
				return o, nil
			}
		}
	}
	return object{}, errors.New("no key matches")
}

// mechanism is f's mechanism for key o and its parameter.
func (f *cryptoFlags) mechanism(o object, op string) (tpmtoken.Mechanism, error) {
	var m ck.MechType
	if f.mech == "" {
		def := map[string]map[string]ck.MechType{
			"sign":    {"EC": ck.CKM_ECDSA_SHA256, "RSA": ck.CKM_SHA256_RSA_PKCS, "generic-secret": ck.CKM_SHA256_HMAC, "ML-DSA": ck.CKM_ML_DSA},
			"encrypt": {"RSA": ck.CKM_RSA_PKCS_OAEP, "AES": ck.CKM_AES_CBC_PAD},
		}[map[string]string{"sign": "sign", "verify": "sign", "encrypt": "encrypt", "decrypt": "encrypt"}[op]]
		var ok bool
		if m, ok = def[o.KeyType]; !ok {
			return tpmtoken.Mechanism{}, usagef("name the mechanism (-m) for a %s key", o.KeyType)
		}
	} else {
		var err error
		if m, err = parseMech(f.mech); err != nil {
			return tpmtoken.Mechanism{}, err
		}
	}
	mm := tpmtoken.Mechanism{Type: m}
	hash, err := parseMech(map[string]string{"sha1": "SHA-1", "sha224": "SHA224", "sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}[strings.ToLower(f.hash)])
	if err != nil {
		return mm, usagef("--hash %q: sha1, sha224, sha256, sha384 or sha512", f.hash)
	}
	switch m {
	case ck.CKM_RSA_PKCS_OAEP:
		mm.Param = tpmtoken.OAEPParams{HashAlg: hash, MGF: hashMGF[hash].mgf}
	case ck.CKM_RSA_PKCS_PSS, ck.CKM_SHA1_RSA_PKCS_PSS, ck.CKM_SHA224_RSA_PKCS_PSS, ck.CKM_SHA256_RSA_PKCS_PSS, ck.CKM_SHA384_RSA_PKCS_PSS, ck.CKM_SHA512_RSA_PKCS_PSS:
		if h, ok := mechHash[m]; ok {
			hash = h
		}
		mm.Param = tpmtoken.PSSParams{HashAlg: hash, MGF: hashMGF[hash].mgf, SaltLen: ck.ULong(hashMGF[hash].size)}
	case ck.CKM_AES_CBC, ck.CKM_AES_CBC_PAD, ck.CKM_AES_OFB, ck.CKM_AES_CFB128, ck.CKM_AES_CTR:
		iv, err := hex.DecodeString(f.iv)
		if err != nil || len(iv) != 16 {
			return mm, usagef("--iv: 16 bytes in hex (32 hex digits) for %s", mechName(m))
		}
		if m == ck.CKM_AES_CTR {
			var p tpmtoken.CTRParams
			p.CounterBits = 128
			copy(p.Block[:], iv)
			mm.Param = p
		} else {
			mm.Param = tpmtoken.BytesParam(iv)
		}
	}
	return mm, nil
}

// ecdsaDER turns PKCS#11's r‖s into the DER openssl reads, and back.
func ecdsaDER(sig []byte) ([]byte, error) {
	n := len(sig) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
}

func ecdsaRaw(der []byte, o object) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 {
		return nil, errors.New("the signature is not a DER ECDSA signature (give --raw for r‖s)")
	}
	size := (o.Bits + 7) / 8
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("the ECDSA signature does not fit the key's curve")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

func isECDSA(m ck.MechType) bool { return m >= ck.CKM_ECDSA && m <= ck.CKM_ECDSA_SHA512 }

func signCmd(g *globals) *cobra.Command {
	var f cryptoFlags
	c := &cobra.Command{
		Use:   "sign (--id HEX | --label LABEL | pkcs11:URI) [-m MECHANISM] [-i IN] [-o OUT]",
		Short: "Sign data with a token key (standard input to standard output)",
		Long: `Sign data with a private key (or HMAC key) of the token. ECDSA signatures
are written as DER (what openssl dgst -verify reads) unless --raw (PKCS#11's
r‖s). RSA-PKCS-PSS takes its hash from the mechanism or --hash; the salt is
the hash's length. RSA-PKCS, RSA-X-509 and ECDSA sign what they are given (a
DigestInfo, a block, a digest).`,
		Example: `  tpm11 sign --id 01 < msg > msg.sig && openssl dgst -sha256 -verify <(tpm11 export --id 01) -signature msg.sig msg
  tpm11 sign --id 02 -m SHA256-RSA-PKCS-PSS -i msg -o msg.sig`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, data, err := f.keyAndData(g, args)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				o, err := f.key(c, tmpl, ck.CKO_PRIVATE_KEY, ck.CKO_SECRET_KEY)
				if err != nil {
					return err
				}
				m, err := f.mechanism(o, "sign")
				if err != nil {
					return err
				}
				if err := c.l.SignInit(c.h, m, o.handle); err != nil {
					return fmt.Errorf("%s with %s: %w", mechName(m.Type), o, err)
				}
				sig, err := c.l.Sign(c.h, data, tpmtoken.Dest{Cap: 1 << 12})
				if err != nil {
					return fmt.Errorf("%s with %s: %w", mechName(m.Type), o, err)
				}
				if isECDSA(m.Type) && !f.der {
					if sig, err = ecdsaDER(sig); err != nil {
						return err
					}
				}
				return writeData(f.out, sig, cmd.OutOrStdout())
			})
		},
	}
	f.register(c)
	c.Flags().BoolVar(&f.der, "raw", false, "write an ECDSA signature as r‖s, not DER")
	return c
}

func verifyCmd(g *globals) *cobra.Command {
	var f cryptoFlags
	c := &cobra.Command{
		Use:   "verify (--id HEX | --label LABEL | pkcs11:URI) --signature FILE [-m MECHANISM] [-i IN]",
		Short: "Check a signature with a token key: exit 0 if it is valid, 1 if not",
		Args:  maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := f.sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label or a pkcs11: URI")
			}
			if f.sf == "" {
				return usagef("--signature FILE is required")
			}
			sig, err := readInput(f.sf, "signature")
			if err != nil {
				return err
			}
			data, err := readData(f.in)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, false, func(c *ctx) error {
				o, err := f.key(c, tmpl, ck.CKO_PUBLIC_KEY)
				if err != nil && c.pinAvailable() { // an HMAC key is secret: log in
					if err = c.login(); err == nil {
						o, err = f.key(c, tmpl, ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY)
					}
				}
				if err != nil {
					return err
				}
				m, err := f.mechanism(o, "verify")
				if err != nil {
					return err
				}
				if isECDSA(m.Type) && !f.der {
					if sig, err = ecdsaRaw(sig, o); err != nil {
						return err
					}
				}
				if err := c.l.VerifyInit(c.h, m, o.handle); err != nil {
					return fmt.Errorf("%s with %s: %w", mechName(m.Type), o, err)
				}
				if err := c.l.Verify(c.h, data, sig); err != nil {
					if rv := ck.ToRV(err); rv == ck.CKR_SIGNATURE_INVALID || rv == ck.CKR_SIGNATURE_LEN_RANGE {
						return errors.New("the signature is NOT valid")
					}
					return fmt.Errorf("%s with %s: %w", mechName(m.Type), o, err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "signature valid")
				return nil
			})
		},
	}
	f.register(c)
	c.Flags().StringVarP(&f.sf, "signature", "s", "", "the signature file")
	c.Flags().BoolVar(&f.der, "raw", false, "the ECDSA signature is r‖s, not DER")
	return c
}

func cipherCmd(g *globals, decrypt bool) *cobra.Command {
	var f cryptoFlags
	name, short := "encrypt", "Encrypt data with a token key (RSA public key, AES key)"
	if decrypt {
		name, short = "decrypt", "Decrypt data with a token key (RSA private key, AES key)"
	}
	c := &cobra.Command{
		Use:   name + " (--id HEX | --label LABEL | pkcs11:URI) [-m MECHANISM] [--iv HEX] [-i IN] [-o OUT]",
		Short: short,
		Long: short + `. The default mechanism is RSA-PKCS-OAEP (SHA-256, MGF1-SHA-256,
no label; --hash chooses) for RSA keys and AES-CBC-PAD for AES keys
(--iv is then required).`,
		Args: maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, data, err := f.keyAndData(g, args)
			if err != nil {
				return err
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				classes := []ck.ObjectClass{ck.CKO_PUBLIC_KEY, ck.CKO_SECRET_KEY}
				if decrypt {
					classes = []ck.ObjectClass{ck.CKO_PRIVATE_KEY, ck.CKO_SECRET_KEY}
				}
				o, err := f.key(c, tmpl, classes...)
				if err != nil {
					return err
				}
				m, err := f.mechanism(o, name)
				if err != nil {
					return err
				}
				dst := tpmtoken.Dest{Cap: len(data) + 1<<12}
				var out []byte
				if decrypt {
					if err = c.l.DecryptInit(c.h, m, o.handle); err == nil {
						out, err = c.l.Decrypt(c.h, data, dst)
					}
				} else {
					if err = c.l.EncryptInit(c.h, m, o.handle); err == nil {
						out, err = c.l.Encrypt(c.h, data, dst)
					}
				}
				if err != nil {
					return fmt.Errorf("%s with %s: %w", mechName(m.Type), o, err)
				}
				return writeData(f.out, out, cmd.OutOrStdout())
			})
		},
	}
	f.register(c)
	return c
}

func mechanismsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mechanisms",
		Short: "List the token's mechanisms: key sizes and what each does (pkcs11-tool -M)",
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := g.pick(l, nil)
			if err != nil {
				return err
			}
			ms, err := l.MechanismList(t.Slot)
			if err != nil {
				return err
			}
			flags := []struct {
				f    ck.Flags
				name string
			}{{ck.CKF_GENERATE, "generate"}, {ck.CKF_GENERATE_KEY_PAIR, "generate-key-pair"}, {ck.CKF_SIGN, "sign"},
				{ck.CKF_VERIFY, "verify"}, {ck.CKF_ENCRYPT, "encrypt"}, {ck.CKF_DECRYPT, "decrypt"}, {ck.CKF_DIGEST, "digest"},
				{ck.CKF_WRAP, "wrap"}, {ck.CKF_UNWRAP, "unwrap"}, {ck.CKF_DERIVE, "derive"}}
			var b bytes.Buffer
			for _, m := range ms {
				info, err := l.MechanismInfo(t.Slot, m)
				if err != nil {
					return err
				}
				var what []string
				for _, f := range flags {
					if info.Flags&f.f != 0 {
						what = append(what, f.name)
					}
				}
				size := ""
				if info.Max > 0 {
					size = fmt.Sprintf("%d-%d", info.Min, info.Max)
				}
				hw := "software"
				if info.Flags&ck.CKF_HW != 0 {
					hw = "TPM"
				}
				fmt.Fprintf(&b, "%-24s %-10s %-8s %s\n", mechName(m), size, hw, strings.Join(what, ","))
			}
			_, err = cmd.OutOrStdout().Write(b.Bytes())
			return err
		},
	}
}
