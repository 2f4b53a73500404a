package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// object is one PKCS#11 object as tpm11 shows it (text and --json).
type object struct {
	Class    string     `json:"class"` // private-key, public-key, secret-key, certificate, data
	ID       string     `json:"id"`    // hex
	Label    string     `json:"label"`
	KeyType  string     `json:"key_type,omitempty"` // RSA, EC, AES, generic-secret
	Bits     int        `json:"bits,omitempty"`
	Curve    string     `json:"curve,omitempty"`
	Usage    []string   `json:"usage,omitempty"`
	Origin   string     `json:"origin,omitempty"` // generated (in the TPM) or imported
	Private  bool       `json:"private"`
	Subject  string     `json:"subject,omitempty"`
	Issuer   string     `json:"issuer,omitempty"`
	NotAfter *time.Time `json:"not_after,omitempty"`
	// PCRPolicy and Portable: see attest.go.
	PCRPolicy string `json:"pcr_policy,omitempty"`
	Portable  bool   `json:"portable,omitempty"`
	URI       string `json:"uri"`
	// UniqueID is CKA_UNIQUE_ID: what --unique-id selects.
	UniqueID string `json:"unique_id"`

	handle uint64
	class  ck.ObjectClass
	id     []byte
	a      tpmtoken.Attrs
}

var classes = map[ck.ObjectClass]struct{ json, text, uri string }{
	ck.CKO_PRIVATE_KEY: {"private-key", "private key", "private"},
	ck.CKO_PUBLIC_KEY:  {"public-key", "public key", "public"},
	ck.CKO_SECRET_KEY:  {"secret-key", "secret key", "secret-key"},
	ck.CKO_CERTIFICATE: {"certificate", "certificate", "cert"},
	ck.CKO_DATA:        {"data", "data", "data"},
}

var keyTypes = map[ck.KeyType]string{ck.CKK_RSA: "RSA", ck.CKK_EC: "EC", ck.CKK_AES: "AES", ck.CKK_GENERIC_SECRET: "generic-secret",
	ck.CKK_ML_DSA: "ML-DSA", ck.CKK_ML_KEM: "ML-KEM"}

var usages = []struct {
	a    ck.AttributeType
	name string
}{
	{ck.CKA_SIGN, "sign"}, {ck.CKA_VERIFY, "verify"}, {ck.CKA_ENCRYPT, "encrypt"}, {ck.CKA_DECRYPT, "decrypt"},
	{ck.CKA_DERIVE, "derive"}, {ck.CKA_WRAP, "wrap"}, {ck.CKA_UNWRAP, "unwrap"},
}

var describeAttrs = []ck.AttributeType{ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_ID, ck.CKA_LABEL, ck.CKA_LOCAL,
	ck.CKA_PRIVATE, ck.CKA_MODULUS_BITS, ck.CKA_MODULUS, ck.CKA_EC_PARAMS, ck.CKA_VALUE_LEN, ck.CKA_CERTIFICATE_TYPE,
	ck.CKA_SIGN, ck.CKA_VERIFY, ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_DERIVE, ck.CKA_WRAP, ck.CKA_UNWRAP,
	tpmtoken.CKA_TPM11_PCR_POLICY, tpmtoken.CKA_TPM11_POLICY_AUTHORITY, tpmtoken.CKA_TPM11_PORTABLE, ck.CKA_UNIQUE_ID}

// describe reads what tpm11 shows of an object.
func describe(l *tpmtoken.Library, h uint64, t token, handle uint64) (object, error) {
	a, err := getAttrs(l, h, handle, describeAttrs...)
	if err != nil {
		return object{}, err
	}
	cl, _ := a.ULong(ck.CKA_CLASS)
	o := object{handle: handle, class: ck.ObjectClass(cl), id: a[ck.CKA_ID], a: a,
		ID: hex.EncodeToString(a[ck.CKA_ID]), Label: string(a[ck.CKA_LABEL]), Private: a.Bool(ck.CKA_PRIVATE),
		UniqueID: string(a[ck.CKA_UNIQUE_ID])}
	names, ok := classes[o.class]
	if !ok {
		names.json, names.text = fmt.Sprintf("class-0x%x", cl), fmt.Sprintf("class 0x%x", cl)
	}
	o.Class = names.json
	if kt, ok := a.ULong(ck.CKA_KEY_TYPE); ok {
		o.KeyType = keyTypes[ck.KeyType(kt)]
		if o.KeyType == "" {
			o.KeyType = fmt.Sprintf("0x%x", kt)
		}
	}
	switch c := tpmtoken.CurveOf(a[ck.CKA_EC_PARAMS]); {
	case c != nil:
		o.Curve, o.Bits = fmt.Sprintf("P-%d", c.Bits), c.Bits
	case len(a[ck.CKA_MODULUS]) > 0:
		o.Bits = len(bytes.TrimLeft(a[ck.CKA_MODULUS], "\x00")) * 8
	default:
		if bits, ok := a.ULong(ck.CKA_MODULUS_BITS); ok {
			o.Bits = int(bits)
		} else if n, ok := a.ULong(ck.CKA_VALUE_LEN); ok {
			o.Bits = int(n) * 8
		}
	}
	for _, u := range usages {
		if a.Bool(u.a) {
			o.Usage = append(o.Usage, u.name)
		}
	}
	if o.class == ck.CKO_PRIVATE_KEY || o.class == ck.CKO_SECRET_KEY {
		if _, ok := a[ck.CKA_LOCAL]; ok {
			o.Origin = map[bool]string{true: "generated", false: "imported"}[a.Bool(ck.CKA_LOCAL)]
		}
	}
	if o.class == ck.CKO_CERTIFICATE {
		if v, err := getAttrs(l, h, handle, ck.CKA_VALUE); err == nil {
			if cert, err := x509.ParseCertificate(v[ck.CKA_VALUE]); err == nil {
				o.Subject, o.Issuer = cert.Subject.String(), cert.Issuer.String()
				na := cert.NotAfter.UTC()
				o.NotAfter = &na
			}
		}
	}
	o.PCRPolicy, o.Portable = vendorDescription(a) // attest.go
	o.URI = (&p11uri{token: t.Label, id: o.id, hasID: true, object: o.Label, typ: names.uri}).String()
	return o, nil
}

// kind is the object's type in words: "EC P-256", "RSA 2048", "AES 256".
func (o object) kind() string {
	switch {
	case o.Curve != "":
		return o.KeyType + " " + o.Curve
	case o.KeyType != "" && o.Bits > 0:
		return fmt.Sprintf("%s %d", o.KeyType, o.Bits)
	case o.KeyType != "":
		return o.KeyType
	case o.class == ck.CKO_CERTIFICATE:
		return "X.509"
	}
	return ""
}

func (o object) classText() string {
	if n, ok := classes[o.class]; ok {
		return n.text
	}
	return o.Class
}

func (o object) notes() string {
	if n := o.vendorNotes(); n != "" { // attest.go
		return n
	}
	switch {
	case o.Origin == "generated":
		return "generated in the TPM"
	case o.Origin == "imported":
		return "imported into the TPM"
	case o.class == ck.CKO_CERTIFICATE && o.NotAfter != nil:
		return fmt.Sprintf("%s, until %s", o.Subject, o.NotAfter.Format("2006-01-02"))
	}
	return ""
}

// oneLine is how keygen, import and delete name an object.
func (o object) String() string {
	s := o.classText()
	if k := o.kind(); k != "" && o.class != ck.CKO_CERTIFICATE {
		s += " " + k
	}
	if o.Label != "" {
		s += fmt.Sprintf(" %q", o.Label)
	}
	return s
}

// sortObjects groups by ID, then keys before certificates.
func sortObjects(objs []object) {
	slices.SortStableFunc(objs, func(a, b object) int {
		if c := bytes.Compare(a.id, b.id); c != 0 {
			return c
		}
		if c := classRank(a.class) - classRank(b.class); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
}

// objectFlags select objects: --id, --label, --type, or a pkcs11: URI.
type objectFlags struct{ id, label, typ, uid string }

func (f *objectFlags) register(c *cobra.Command, withType bool) {
	c.Flags().StringVar(&f.id, "id", "", "the object's CKA_ID in hex (e.g. 01)")
	c.Flags().StringVar(&f.label, "label", "", "the object's label")
	c.Flags().StringVar(&f.uid, "unique-id", "", "the object's CKA_UNIQUE_ID (list --json shows it): one object, when an ID or label names several")
	if withType {
		c.Flags().StringVar(&f.typ, "type", "", "only objects of this type: private, public, cert, secret-key, data")
		_ = c.RegisterFlagCompletionFunc("type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"private", "public", "cert", "secret-key", "data"}, cobra.ShellCompDirectiveNoFileComp
		})
	}
	_ = c.RegisterFlagCompletionFunc("id", cobra.NoFileCompletions)
	_ = c.RegisterFlagCompletionFunc("label", cobra.NoFileCompletions)
}

// selection merges the flags and a URI argument into a find template.
func (f *objectFlags) selection(args []string) (*p11uri, []tpmtoken.Attr, error) {
	u := &p11uri{}
	if len(args) > 0 {
		var err error
		if u, err = parseURI(args[0]); err != nil {
			return nil, nil, usageError{err}
		}
	}
	if f.id != "" {
		id, err := parseID(f.id)
		if err != nil {
			return nil, nil, err
		}
		if u.hasID && !bytes.Equal(u.id, id) {
			return nil, nil, usagef("--id %s and the URI's id=%X differ", f.id, u.id)
		}
		u.id, u.hasID = id, true
	}
	if f.label != "" {
		if u.object != "" && u.object != f.label {
			return nil, nil, usagef("--label %q and the URI's object=%q differ", f.label, u.object)
		}
		u.object = f.label
	}
	if f.typ != "" {
		t := map[string]string{"private": "private", "public": "public", "cert": "cert", "certificate": "cert",
			"secret": "secret-key", "secret-key": "secret-key", "data": "data"}[f.typ]
		if t == "" {
			return nil, nil, usagef("--type %q: private, public, cert, secret-key or data", f.typ)
		}
		if u.typ != "" && u.typ != t {
			return nil, nil, usagef("--type %s and the URI's type=%s differ", f.typ, u.typ)
		}
		u.typ = t
	}
	var tmpl []tpmtoken.Attr
	if f.uid != "" {
		tmpl = append(tmpl, attr(ck.CKA_UNIQUE_ID, []byte(f.uid)))
	}
	if u.hasID {
		tmpl = append(tmpl, attr(ck.CKA_ID, u.id))
	}
	if u.object != "" {
		tmpl = append(tmpl, attr(ck.CKA_LABEL, []byte(u.object)))
	}
	if u.typ != "" {
		for c, n := range classes {
			if n.uri == u.typ {
				tmpl = append(tmpl, tpmtoken.ULongAttr(ck.CKA_CLASS, c))
			}
		}
	}
	return u, tmpl, nil
}

// uriPIN is a PIN given in the URI (pin-value, pin-source), if any.
func uriPIN(u *p11uri) ([]byte, bool, error) {
	switch {
	case u == nil:
	case u.pinValue != "":
		return []byte(u.pinValue), true, nil
	case u.pinSource != "":
		p, err := secretFile(u.pinSource, "PIN")
		return p, true, err
	}
	return nil, false, nil
}
