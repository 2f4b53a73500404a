package ck

// Key encapsulation values of PKCS#11 3.2 (pkcs11t.h).
const (
	CKA_ENCAPSULATE AttributeType = 0x633
	CKA_DECAPSULATE AttributeType = 0x634

	// Template attributes (values are CK_ATTRIBUTE arrays) although the
	// header gives them no CKF_ARRAY_ATTRIBUTE bit.
	CKA_ENCAPSULATE_TEMPLATE AttributeType = 0x62a
	CKA_DECAPSULATE_TEMPLATE AttributeType = 0x62b

	CKF_ENCAPSULATE Flags = 0x10000000
	CKF_DECAPSULATE Flags = 0x20000000

	CKM_ECDH1_COFACTOR_DERIVE MechType = 0x1051
)
