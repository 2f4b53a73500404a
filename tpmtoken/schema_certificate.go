package tpmtoken

import "github.com/tpm11/tpm11/ck"

// Certificates (certificate_objects.md): the common attributes, then those
// of X.509 public key certificates and of X.509 attribute certificates.
// Derived values (subject, issuer, serial and key info from the value;
// CKA_CHECK_VALUE) are filled by completeCertificate. CKA_TRUSTED true is
// for the SO only (checked there too).
var certRows = []attrDef{
	{typ: ck.CKA_CERTIFICATE_TYPE, kind: kindULong, given: opCreate, required: opCreate},
	{typ: ck.CKA_TRUSTED, kind: kindBool, given: opCreate, def: vFalse},
	{typ: ck.CKA_CERTIFICATE_CATEGORY, kind: kindULong, given: opCreate, def: vULong(0)},
	{typ: ck.CKA_CHECK_VALUE, kind: kindBytes, given: opCreate},
	{typ: ck.CKA_START_DATE, kind: kindDate, given: opCreate, def: vEmpty},
	{typ: ck.CKA_END_DATE, kind: kindDate, given: opCreate, def: vEmpty},
	{typ: ck.CKA_PUBLIC_KEY_INFO, kind: kindBytes, given: opCreate},
	{typ: ck.CKA_VALUE, kind: kindBytes, given: opCreate, def: vEmpty},
}

var x509Rows = []attrDef{
	{typ: ck.CKA_SUBJECT, kind: kindBytes, given: opCreate},
	{typ: ck.CKA_ID, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_ISSUER, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_SERIAL_NUMBER, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_URL, kind: kindBytes, given: opCreate, def: vEmpty},
	{typ: ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, kind: kindBytes, given: opCreate, def: vEmpty},
	{typ: ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY, kind: kindBytes, given: opCreate, def: vEmpty},
	{typ: ck.CKA_JAVA_MIDP_SECURITY_DOMAIN, kind: kindULong, given: opCreate, def: vULong(0)},
	{typ: ck.CKA_NAME_HASH_ALGORITHM, kind: kindULong, given: opCreate, def: vULong(uint64(ck.CKM_SHA_1))},
}

var attrCertRows = []attrDef{
	{typ: ck.CKA_OWNER, kind: kindBytes, given: opCreate, required: opCreate},
	{typ: ck.CKA_AC_ISSUER, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_SERIAL_NUMBER, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_ATTR_TYPES, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
}

func init() {
	declared(func() {
		register(declare(ck.CKO_CERTIFICATE, uint64(ck.CKC_X_509), storageRows, certRows, x509Rows),
			declare(ck.CKO_CERTIFICATE, uint64(ck.CKC_X_509_ATTR_CERT), storageRows, certRows, attrCertRows))
	})
}
