package tpmtoken

import "github.com/tpm11/tpm11/ck"

// The attributes every object has (common_attributes.md, storage objects).
// CKA_TOKEN, CKA_PRIVATE: only to the value they have (a token key's
// value never leaves its parent; a key's parent follows CKA_PRIVATE), but
// a copy may differ.
var storageRows = []attrDef{
	{typ: ck.CKA_CLASS, kind: kindULong, given: opMake, change: same},
	{typ: ck.CKA_TOKEN, kind: kindBool, given: opMake, def: vFalse, change: same, copy: true},
	{typ: ck.CKA_PRIVATE, kind: kindBool, given: opMake, def: vFalse, change: same, copy: true},
	{typ: ck.CKA_MODIFIABLE, kind: kindBool, given: opMake, def: vTrue, copy: true},
	{typ: ck.CKA_COPYABLE, kind: kindBool, given: opMake, def: vTrue},
	{typ: ck.CKA_DESTROYABLE, kind: kindBool, given: opMake, def: vTrue, copy: true},
	{typ: ck.CKA_LABEL, kind: kindBytes, given: opMake, def: vEmpty, change: free},
	{typ: ck.CKA_UNIQUE_ID, kind: kindBytes},
}

// Data objects (data_objects.md).
var dataRows = []attrDef{
	{typ: ck.CKA_APPLICATION, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
	{typ: ck.CKA_OBJECT_ID, kind: kindBytes, given: opCreate, change: free},
	{typ: ck.CKA_VALUE, kind: kindBytes, given: opCreate, def: vEmpty, change: free},
}

func init() {
	declared(func() { register(declare(ck.CKO_DATA, 0, storageRows, dataRows)) })
}
