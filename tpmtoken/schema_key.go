package tpmtoken

import "github.com/tpm11/tpm11/ck"

// Keys (key_objects.md, public/private/secret key objects). A TPM key's
// uses are fixed when it is made: a usage can be turned off, never on
// (toFalse). Every key class accepts every usage attribute: one its key
// type has no mechanism for is stored false (dropped), because real
// clients ask for more than a key can do.

// keyRows are the attributes of every key.
var keyRows = []attrDef{
	{typ: ck.CKA_KEY_TYPE, kind: kindULong, given: opMake},
	{typ: ck.CKA_ID, kind: kindBytes, given: opMake, change: free},
	{typ: ck.CKA_START_DATE, kind: kindDate, given: opMake, change: free},
	{typ: ck.CKA_END_DATE, kind: kindDate, given: opMake, change: free},
	{typ: ck.CKA_SUBJECT, kind: kindBytes, given: opMake, change: free},
	{typ: ck.CKA_APPLICATION, kind: kindBytes, given: opMake, change: free},
	{typ: ck.CKA_ALLOWED_MECHANISMS, kind: kindMechs, given: opMake},
	{typ: ck.CKA_TRUSTED, kind: kindBool, given: opMake},
	{typ: ck.CKA_SENSITIVE, kind: kindBool, given: opMake, change: same},
	{typ: ck.CKA_EXTRACTABLE, kind: kindBool, given: opMake, change: same, truth: refused},
	{typ: ck.CKA_ALWAYS_AUTHENTICATE, kind: kindBool, given: opMake, truth: refused},
	{typ: ck.CKA_WRAP_WITH_TRUSTED, kind: kindBool, given: opMake, truth: refused},
	// Set by the token: where the key came from (setOrigin) and its
	// public key (publicAttrs).
	{typ: ck.CKA_LOCAL, kind: kindBool},
	{typ: ck.CKA_KEY_GEN_MECHANISM, kind: kindULong},
	{typ: ck.CKA_ALWAYS_SENSITIVE, kind: kindBool},
	{typ: ck.CKA_NEVER_EXTRACTABLE, kind: kindBool},
	{typ: ck.CKA_PUBLIC_KEY_INFO, kind: kindBytes},
	{typ: ck.CKA_OBJECT_VALIDATION_FLAGS, kind: kindULong, def: vULong(0)}, // 3.2: no validation (FIPS, ...) is claimed
}

// usageRows declare the nine usages of a key: those in can are kept as
// given, the others stored false; defs are the defaults (true or false)
// where the template is silent.
func usageRows(can []ck.AttributeType, defs map[ck.AttributeType]bool) []attrDef {
	var rows []attrDef
	for _, typ := range []ck.AttributeType{ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_SIGN, ck.CKA_VERIFY, ck.CKA_WRAP,
		ck.CKA_UNWRAP, ck.CKA_DERIVE, ck.CKA_SIGN_RECOVER, ck.CKA_VERIFY_RECOVER} {
		d := attrDef{typ: typ, kind: kindBool, given: opMake, change: toFalse, truth: dropped}
		for _, c := range can {
			if c == typ {
				d.truth = honoured
			}
		}
		if v, ok := defs[typ]; ok {
			d.def = boolBytes(v)
		}
		rows = append(rows, d)
	}
	return rows
}

// KEM usages (3.2: CKA_ENCAPSULATE of a public key, CKA_DECAPSULATE of a
// private one) of RSA and EC keys. Like every usage of a TPM key they can
// be turned off, never on (toFalse). Where the template is silent they
// follow the usages the spec makes them equivalent to (the default is the
// token's, "and may depend on the values of other attributes"): RSA
// decapsulation is C_UnwrapKey, EC decapsulation C_DeriveKey. So a key
// made to sign is no RSA decryption oracle unless asked to be. (ML-KEM
// keys have them true by default: pqc_keys.go.)
var (
	rsaEncapUse = []ck.AttributeType{ck.CKA_ENCRYPT, ck.CKA_WRAP}
	rsaDecapUse = []ck.AttributeType{ck.CKA_UNWRAP}
	ecKEMUse    = []ck.AttributeType{ck.CKA_DERIVE}
)

func kemRow(typ ck.AttributeType, equiv []ck.AttributeType) []attrDef {
	return []attrDef{{typ: typ, kind: kindBool, given: opMake, change: toFalse, defOf: func(a Attrs) []byte {
		for _, e := range equiv {
			if a.Bool(e) {
				return vTrue
			}
		}
		return vFalse
	}}}
}

// Public keys. CKA_SENSITIVE is accepted on them (clients send one
// template for both halves) and means nothing.
var (
	publicRows = []attrDef{
		{typ: ck.CKA_TRUSTED, kind: kindBool, given: opMake, def: vFalse},
		{typ: ck.CKA_WRAP_TEMPLATE, kind: kindTmpl, given: opMake},
		{typ: ck.CKA_ENCAPSULATE_TEMPLATE, kind: kindTmpl, given: opMake},
	}
	rsaPublicRows = []attrDef{
		{typ: ck.CKA_MODULUS, kind: kindBytes, given: opCreate, required: opCreate},
		{typ: ck.CKA_PUBLIC_EXPONENT, kind: kindBytes, given: opCreate | opGenerate, input: opGenerate, required: opCreate},
		{typ: ck.CKA_MODULUS_BITS, kind: kindULong, given: opGenerate, input: opGenerate, required: opGenerate},
	}
	ecPublicRows = []attrDef{
		{typ: ck.CKA_EC_PARAMS, kind: kindBytes, given: opCreate | opGenerate, input: opGenerate, required: opCreate},
		{typ: ck.CKA_EC_POINT, kind: kindBytes, given: opCreate, required: opCreate},
	}
)

// Private keys: in the TPM, never extractable. Key material given to an
// import goes into the TPM (input) and is never kept; were it kept, it
// would be hidden.
var (
	privateRows = []attrDef{
		{typ: ck.CKA_PRIVATE, kind: kindBool, given: opMake, def: vTrue, change: same, copy: true},
		{typ: ck.CKA_SENSITIVE, kind: kindBool, given: opMake, def: vTrue, change: same},
		{typ: ck.CKA_EXTRACTABLE, kind: kindBool, given: opMake, def: vFalse, change: same, truth: refused},
		{typ: ck.CKA_ALWAYS_AUTHENTICATE, kind: kindBool, given: opMake, def: vFalse}, // the PIN before each use (alwaysauth.go)
		{typ: ck.CKA_WRAP_WITH_TRUSTED, kind: kindBool, given: opMake, def: vFalse, truth: refused},
		{typ: ck.CKA_UNWRAP_TEMPLATE, kind: kindTmpl, given: opMake},
		{typ: ck.CKA_DERIVE_TEMPLATE, kind: kindTmpl, given: opMake},
		{typ: ck.CKA_DECAPSULATE_TEMPLATE, kind: kindTmpl, given: opMake},
		// Vendor attributes (pcrpolicy.go, keyfile.go, attest.go): read
		// at generation, or set by the token.
		{typ: CKA_TPM11_PCR_POLICY, kind: kindBytes, given: opGenerate, input: opGenerate},
		{typ: CKA_TPM11_POLICY_AUTHORITY, kind: kindBytes, given: opGenerate, input: opGenerate},
		{typ: CKA_TPM11_PORTABLE, kind: kindBool, given: opGenerate, input: opGenerate},
		{typ: CKA_TPM11_POLICY, kind: kindBytes},
		{typ: CKA_TPM11_ATTESTATION, kind: kindBytes},
	}
	rsaPrivateRows = []attrDef{
		{typ: ck.CKA_MODULUS, kind: kindBytes, given: opImport, input: opImport},
		{typ: ck.CKA_PUBLIC_EXPONENT, kind: kindBytes, given: opImport | opGenerate, input: opImport | opGenerate},
		{typ: ck.CKA_MODULUS_BITS, kind: kindULong, given: opGenerate, input: opGenerate},
		{typ: ck.CKA_PRIVATE_EXPONENT, kind: kindBytes, given: opImport, input: opImport, hidden: true},
		{typ: ck.CKA_PRIME_1, kind: kindBytes, given: opImport, input: opImport, hidden: true},
		{typ: ck.CKA_PRIME_2, kind: kindBytes, given: opImport, input: opImport, hidden: true},
		{typ: ck.CKA_EXPONENT_1, kind: kindBytes, given: opImport, input: opImport, hidden: true},
		{typ: ck.CKA_EXPONENT_2, kind: kindBytes, given: opImport, input: opImport, hidden: true},
		{typ: ck.CKA_COEFFICIENT, kind: kindBytes, given: opImport, input: opImport, hidden: true},
	}
	ecPrivateRows = []attrDef{
		{typ: ck.CKA_EC_PARAMS, kind: kindBytes, given: opImport | opGenerate, input: opImport | opGenerate, required: opImport},
		{typ: ck.CKA_VALUE, kind: kindBytes, given: opImport, input: opImport, required: opImport, hidden: true},
	}
)

// Secret keys (aes.md, generic_secret_key.md): in the TPM; readable (not
// sensitive and extractable) only as session objects (secret.go).
var secretRows = []attrDef{
	{typ: ck.CKA_PRIVATE, kind: kindBool, given: opMake, def: vTrue, change: same, copy: true},
	{typ: ck.CKA_TRUSTED, kind: kindBool, given: opMake, def: vFalse},
	{typ: ck.CKA_SENSITIVE, kind: kindBool, given: opMake, def: vTrue, change: same},
	{typ: ck.CKA_EXTRACTABLE, kind: kindBool, given: opMake, def: vFalse, change: same},
	{typ: ck.CKA_WRAP_WITH_TRUSTED, kind: kindBool, given: opMake, def: vFalse},
	{typ: ck.CKA_VALUE, kind: kindBytes, given: opImport, input: opImport, required: opCreate, hidden: true},
	{typ: ck.CKA_VALUE_LEN, kind: kindULong, given: opCreate | opGenerate | opUnwrap | opDerive, input: opMake, required: opGenerate},
	{typ: ck.CKA_WRAP_TEMPLATE, kind: kindTmpl, given: opMake},
	{typ: ck.CKA_UNWRAP_TEMPLATE, kind: kindTmpl, given: opMake},
	{typ: ck.CKA_DERIVE_TEMPLATE, kind: kindTmpl, given: opMake},
}

// Key pairs: what each half of each key type can do, and its defaults.
var (
	pubDefaults  = map[ck.AttributeType]bool{ck.CKA_VERIFY: true, ck.CKA_ENCRYPT: false, ck.CKA_DERIVE: false, ck.CKA_WRAP: false, ck.CKA_VERIFY_RECOVER: false}
	privDefaults = map[ck.AttributeType]bool{ck.CKA_SIGN: true, ck.CKA_DECRYPT: false, ck.CKA_DERIVE: false, ck.CKA_UNWRAP: false, ck.CKA_SIGN_RECOVER: false}
	// An EC key says it never encrypts, wraps or recovers, on both halves.
	ecDefaults = map[ck.AttributeType]bool{ck.CKA_ENCRYPT: false, ck.CKA_DECRYPT: false, ck.CKA_WRAP: false, ck.CKA_UNWRAP: false,
		ck.CKA_SIGN_RECOVER: false, ck.CKA_VERIFY_RECOVER: false}
)

func merge(ms ...map[ck.AttributeType]bool) map[ck.AttributeType]bool {
	out := map[ck.AttributeType]bool{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func init() { declared(keySchemas) }

// keySchemas registers the schemas of this file (see declared).
func keySchemas() {
	rsa, ec, aes, generic := uint64(ck.CKK_RSA), uint64(ck.CKK_EC), uint64(ck.CKK_AES), uint64(ck.CKK_GENERIC_SECRET)
	allUses := []ck.AttributeType{ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_SIGN, ck.CKA_VERIFY, ck.CKA_WRAP, ck.CKA_UNWRAP, ck.CKA_DERIVE}
	register(
		declare(ck.CKO_PUBLIC_KEY, rsa, storageRows, keyRows, publicRows, rsaPublicRows,
			usageRows([]ck.AttributeType{ck.CKA_VERIFY, ck.CKA_ENCRYPT, ck.CKA_WRAP, ck.CKA_VERIFY_RECOVER}, pubDefaults),
			kemRow(ck.CKA_ENCAPSULATE, rsaEncapUse)),
		declare(ck.CKO_PUBLIC_KEY, ec, storageRows, keyRows, publicRows, ecPublicRows,
			usageRows([]ck.AttributeType{ck.CKA_VERIFY, ck.CKA_DERIVE}, merge(pubDefaults, ecDefaults)),
			kemRow(ck.CKA_ENCAPSULATE, ecKEMUse)),
		declare(ck.CKO_PRIVATE_KEY, rsa, storageRows, keyRows, privateRows, rsaPrivateRows,
			usageRows([]ck.AttributeType{ck.CKA_SIGN, ck.CKA_DECRYPT, ck.CKA_UNWRAP, ck.CKA_SIGN_RECOVER}, privDefaults),
			kemRow(ck.CKA_DECAPSULATE, rsaDecapUse)),
		declare(ck.CKO_PRIVATE_KEY, ec, storageRows, keyRows, privateRows, ecPrivateRows,
			usageRows([]ck.AttributeType{ck.CKA_SIGN, ck.CKA_DERIVE}, merge(privDefaults, ecDefaults)),
			kemRow(ck.CKA_DECAPSULATE, ecKEMUse)),
		declare(ck.CKO_SECRET_KEY, aes, storageRows, keyRows, secretRows,
			usageRows(allUses, map[ck.AttributeType]bool{ck.CKA_ENCRYPT: true, ck.CKA_DECRYPT: true, ck.CKA_SIGN: false,
				ck.CKA_VERIFY: false, ck.CKA_WRAP: false, ck.CKA_UNWRAP: false, ck.CKA_DERIVE: false})),
		declare(ck.CKO_SECRET_KEY, generic, storageRows, keyRows, secretRows,
			usageRows(allUses, map[ck.AttributeType]bool{ck.CKA_ENCRYPT: false, ck.CKA_DECRYPT: false, ck.CKA_SIGN: true,
				ck.CKA_VERIFY: true, ck.CKA_WRAP: false, ck.CKA_UNWRAP: false, ck.CKA_DERIVE: false})),
	)
}
