package ck

// The post-quantum values of PKCS#11 3.2 (pkcs11t.h): ML-DSA and ML-KEM.
const (
	CKK_ML_KEM KeyType = 0x49
	CKK_ML_DSA KeyType = 0x4a

	CKA_PARAMETER_SET AttributeType = 0x61d
	CKA_SEED          AttributeType = 0x637

	CKM_ML_KEM_KEY_PAIR_GEN MechType = 0x0f
	CKM_ML_KEM              MechType = 0x17
	CKM_ML_DSA_KEY_PAIR_GEN MechType = 0x1c
	CKM_ML_DSA              MechType = 0x1d
	CKM_HASH_ML_DSA         MechType = 0x1f
	CKM_HASH_ML_DSA_SHA224  MechType = 0x23
	CKM_HASH_ML_DSA_SHA256  MechType = 0x24
	CKM_HASH_ML_DSA_SHA384  MechType = 0x25
	CKM_HASH_ML_DSA_SHA512  MechType = 0x26

	CKP_ML_DSA_44   ULong = 1
	CKP_ML_DSA_65   ULong = 2
	CKP_ML_DSA_87   ULong = 3
	CKP_ML_KEM_512  ULong = 1
	CKP_ML_KEM_768  ULong = 2
	CKP_ML_KEM_1024 ULong = 3

	// CK_HEDGE_TYPE of CK_SIGN_ADDITIONAL_CONTEXT.
	CKH_HEDGE_PREFERRED        ULong = 0
	CKH_HEDGE_REQUIRED         ULong = 1
	CKH_DETERMINISTIC_REQUIRED ULong = 2
)
