// Package ck holds the PKCS#11 3.2 constants tpm11 uses, as Go values, and the
// error type that carries a CK_RV from the token layer to the C boundary.
// Values are transcribed from the PKCS#11 3.2 specification; the return
// values are generated from its header (ck/gen).
package ck

//go:generate go run ./gen -header gen/pkcs11t.h -out rv.go

// CK_ULONG is 64 bits on the platforms tpm11 builds for (LP64). Each kind
// of identifier is its own type, so an attribute can never be passed where a
// mechanism is expected.
type (
	ULong         = uint64
	RV            uint64
	AttributeType uint64
	ObjectClass   uint64
	KeyType       uint64
	MechType      uint64
	Flags         uint64
	UserType      uint64
	State         uint64
	// MGF is CK_RSA_PKCS_MGF_TYPE, KDF is CK_EC_KDF_TYPE.
	MGF ULong
	KDF ULong
)

// CK_UNAVAILABLE_INFORMATION and CK_EFFECTIVELY_INFINITE.
const (
	UnavailableInformation ULong = ^ULong(0)
	EffectivelyInfinite    ULong = 0
	InvalidHandle          ULong = 0
)

// The return values (CKR_*) are in rv.go, generated from the 3.2 header.

// Object classes.
const (
	CKO_DATA        ObjectClass = 0
	CKO_CERTIFICATE ObjectClass = 1
	CKO_PUBLIC_KEY  ObjectClass = 2
	CKO_PRIVATE_KEY ObjectClass = 3
	CKO_SECRET_KEY  ObjectClass = 4
)

// Key types.
const (
	CKK_RSA            KeyType = 0x00
	CKK_EC             KeyType = 0x03
	CKK_GENERIC_SECRET KeyType = 0x10
	CKK_AES            KeyType = 0x1F
)

// Certificate types.
const (
	CKC_X_509           ULong = 0
	CKC_X_509_ATTR_CERT ULong = 1
)

// Attributes.
const (
	CKA_CLASS                      AttributeType = 0x000
	CKA_TOKEN                      AttributeType = 0x001
	CKA_PRIVATE                    AttributeType = 0x002
	CKA_LABEL                      AttributeType = 0x003
	CKA_UNIQUE_ID                  AttributeType = 0x004
	CKA_APPLICATION                AttributeType = 0x010
	CKA_VALUE                      AttributeType = 0x011
	CKA_OBJECT_ID                  AttributeType = 0x012
	CKA_CERTIFICATE_TYPE           AttributeType = 0x080
	CKA_ISSUER                     AttributeType = 0x081
	CKA_SERIAL_NUMBER              AttributeType = 0x082
	CKA_AC_ISSUER                  AttributeType = 0x083
	CKA_OWNER                      AttributeType = 0x084
	CKA_ATTR_TYPES                 AttributeType = 0x085
	CKA_TRUSTED                    AttributeType = 0x086
	CKA_CERTIFICATE_CATEGORY       AttributeType = 0x087
	CKA_JAVA_MIDP_SECURITY_DOMAIN  AttributeType = 0x088
	CKA_URL                        AttributeType = 0x089
	CKA_HASH_OF_SUBJECT_PUBLIC_KEY AttributeType = 0x08A
	CKA_HASH_OF_ISSUER_PUBLIC_KEY  AttributeType = 0x08B
	CKA_NAME_HASH_ALGORITHM        AttributeType = 0x08C
	CKA_CHECK_VALUE                AttributeType = 0x090
	CKA_KEY_TYPE                   AttributeType = 0x100
	CKA_SUBJECT                    AttributeType = 0x101
	CKA_ID                         AttributeType = 0x102
	CKA_SENSITIVE                  AttributeType = 0x103
	CKA_ENCRYPT                    AttributeType = 0x104
	CKA_DECRYPT                    AttributeType = 0x105
	CKA_WRAP                       AttributeType = 0x106
	CKA_UNWRAP                     AttributeType = 0x107
	CKA_SIGN                       AttributeType = 0x108
	CKA_SIGN_RECOVER               AttributeType = 0x109
	CKA_VERIFY                     AttributeType = 0x10A
	CKA_VERIFY_RECOVER             AttributeType = 0x10B
	CKA_DERIVE                     AttributeType = 0x10C
	CKA_START_DATE                 AttributeType = 0x110
	CKA_END_DATE                   AttributeType = 0x111
	CKA_MODULUS                    AttributeType = 0x120
	CKA_MODULUS_BITS               AttributeType = 0x121
	CKA_PUBLIC_EXPONENT            AttributeType = 0x122
	CKA_PRIVATE_EXPONENT           AttributeType = 0x123
	CKA_PRIME_1                    AttributeType = 0x124
	CKA_PRIME_2                    AttributeType = 0x125
	CKA_EXPONENT_1                 AttributeType = 0x126
	CKA_EXPONENT_2                 AttributeType = 0x127
	CKA_COEFFICIENT                AttributeType = 0x128
	CKA_PUBLIC_KEY_INFO            AttributeType = 0x129
	CKA_VALUE_LEN                  AttributeType = 0x161
	CKA_EXTRACTABLE                AttributeType = 0x162
	CKA_LOCAL                      AttributeType = 0x163
	CKA_NEVER_EXTRACTABLE          AttributeType = 0x164
	CKA_ALWAYS_SENSITIVE           AttributeType = 0x165
	CKA_KEY_GEN_MECHANISM          AttributeType = 0x166
	CKA_MODIFIABLE                 AttributeType = 0x170
	CKA_COPYABLE                   AttributeType = 0x171
	CKA_DESTROYABLE                AttributeType = 0x172
	CKA_EC_PARAMS                  AttributeType = 0x180
	CKA_EC_POINT                   AttributeType = 0x181
	CKA_ALWAYS_AUTHENTICATE        AttributeType = 0x202
	CKA_WRAP_WITH_TRUSTED          AttributeType = 0x210
	CKA_OBJECT_VALIDATION_FLAGS    AttributeType = 0x61e
	CKA_ALLOWED_MECHANISMS         AttributeType = 0x40000600
	CKA_WRAP_TEMPLATE              AttributeType = 0x40000211
	CKA_UNWRAP_TEMPLATE            AttributeType = 0x40000212
	CKA_DERIVE_TEMPLATE            AttributeType = 0x40000213
)

// CKF_ARRAY_ATTRIBUTE marks an attribute whose value is an array.
const CKF_ARRAY_ATTRIBUTE AttributeType = 0x40000000

// IsTemplate says whether t is an attribute whose value is an array of
// CK_ATTRIBUTE (a template attribute, key_objects.md). Not the
// CKF_ARRAY_ATTRIBUTE bit: CKA_ALLOWED_MECHANISMS has it and holds
// mechanisms, and the 3.2 header defines CKA_ENCAPSULATE_TEMPLATE and
// CKA_DECAPSULATE_TEMPLATE without it although their values are templates.
func IsTemplate(t AttributeType) bool {
	switch t {
	case CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE, CKA_ENCAPSULATE_TEMPLATE, CKA_DECAPSULATE_TEMPLATE:
		return true
	}
	return false
}

// Mechanisms.
const (
	CKM_RSA_PKCS_KEY_PAIR_GEN  MechType = 0x0000
	CKM_RSA_PKCS               MechType = 0x0001
	CKM_RSA_X_509              MechType = 0x0003
	CKM_SHA1_RSA_PKCS          MechType = 0x0006
	CKM_RSA_PKCS_OAEP          MechType = 0x0009
	CKM_RSA_PKCS_PSS           MechType = 0x000D
	CKM_SHA1_RSA_PKCS_PSS      MechType = 0x000E
	CKM_SHA256_RSA_PKCS        MechType = 0x0040
	CKM_SHA384_RSA_PKCS        MechType = 0x0041
	CKM_SHA512_RSA_PKCS        MechType = 0x0042
	CKM_SHA256_RSA_PKCS_PSS    MechType = 0x0043
	CKM_SHA384_RSA_PKCS_PSS    MechType = 0x0044
	CKM_SHA512_RSA_PKCS_PSS    MechType = 0x0045
	CKM_SHA224_RSA_PKCS        MechType = 0x0046
	CKM_SHA224_RSA_PKCS_PSS    MechType = 0x0047
	CKM_SHA_1                  MechType = 0x0220
	CKM_SHA224                 MechType = 0x0255
	CKM_SHA256                 MechType = 0x0250
	CKM_SHA384                 MechType = 0x0260
	CKM_SHA512                 MechType = 0x0270
	CKM_EC_KEY_PAIR_GEN        MechType = 0x1040
	CKM_ECDSA                  MechType = 0x1041
	CKM_ECDSA_SHA1             MechType = 0x1042
	CKM_ECDSA_SHA224           MechType = 0x1043
	CKM_ECDSA_SHA256           MechType = 0x1044
	CKM_ECDSA_SHA384           MechType = 0x1045
	CKM_ECDSA_SHA512           MechType = 0x1046
	CKM_ECDH1_DERIVE           MechType = 0x1050
	CKM_GENERIC_SECRET_KEY_GEN MechType = 0x0350
	CKM_AES_KEY_GEN            MechType = 0x1080
	CKM_AES_ECB                MechType = 0x1081
	CKM_AES_CBC                MechType = 0x1082
	CKM_AES_CBC_PAD            MechType = 0x1085
	CKM_AES_CTR                MechType = 0x1086
	CKM_AES_CCM                MechType = 0x1088
	CKM_AES_OFB                MechType = 0x2104
	CKM_AES_CFB128             MechType = 0x2107
	CKM_AES_KEY_WRAP           MechType = 0x2109
	CKM_AES_KEY_WRAP_KWP       MechType = 0x210B
	CKM_SHA_1_HMAC             MechType = 0x0221
	CKM_SHA256_HMAC            MechType = 0x0251
	CKM_SHA384_HMAC            MechType = 0x0261
	CKM_SHA512_HMAC            MechType = 0x0271
	CKG_MGF1_SHA1              MGF      = 1
	CKG_MGF1_SHA256            MGF      = 2
	CKG_MGF1_SHA384            MGF      = 3
	CKG_MGF1_SHA512            MGF      = 4
	CKG_MGF1_SHA224            MGF      = 5
)

// CK_GENERATOR_FUNCTION: how a message-based encryption makes its nonce.
const (
	CKG_NO_GENERATE          ULong = 0
	CKG_GENERATE             ULong = 1
	CKG_GENERATE_COUNTER     ULong = 2
	CKG_GENERATE_RANDOM      ULong = 3
	CKG_GENERATE_COUNTER_XOR ULong = 4
)

// CKZ_DATA_SPECIFIED is CK_RSA_PKCS_OAEP_PARAMS' one source of a label.
const CKZ_DATA_SPECIFIED ULong = 1

// Key derivation functions of CK_ECDH1_DERIVE_PARAMS.
const (
	CKD_NULL       KDF = 1
	CKD_SHA1_KDF   KDF = 2
	CKD_SHA224_KDF KDF = 5
	CKD_SHA256_KDF KDF = 6
	CKD_SHA384_KDF KDF = 7
	CKD_SHA512_KDF KDF = 8
)

// Mechanism info flags.
const (
	CKF_HW                Flags = 0x00000001
	CKF_MESSAGE_SIGN      Flags = 0x00000008
	CKF_MESSAGE_VERIFY    Flags = 0x00000010
	CKF_MESSAGE_ENCRYPT   Flags = 0x00000002
	CKF_MESSAGE_DECRYPT   Flags = 0x00000004
	CKF_END_OF_MESSAGE    Flags = 0x00000001 // C_EncryptMessageNext's flags: the last part
	CKF_MULTI_MESSAGE     Flags = 0x00000020
	CKF_ENCRYPT           Flags = 0x00000100
	CKF_DECRYPT           Flags = 0x00000200
	CKF_DIGEST            Flags = 0x00000400
	CKF_SIGN              Flags = 0x00000800
	CKF_SIGN_RECOVER      Flags = 0x00001000
	CKF_VERIFY            Flags = 0x00002000
	CKF_VERIFY_RECOVER    Flags = 0x00004000
	CKF_GENERATE          Flags = 0x00008000
	CKF_GENERATE_KEY_PAIR Flags = 0x00010000
	CKF_WRAP              Flags = 0x00020000
	CKF_UNWRAP            Flags = 0x00040000
	CKF_DERIVE            Flags = 0x00080000
	CKF_EC_F_P            Flags = 0x00100000
	CKF_EC_ECPARAMETERS   Flags = 0x00400000
	CKF_EC_OID            Flags = 0x00800000
	CKF_EC_CURVENAME      Flags = 0x04000000
	CKF_EC_UNCOMPRESS     Flags = 0x01000000
)

// Slot, token and session flags.
const (
	CKF_TOKEN_PRESENT    Flags = 0x00000001
	CKF_REMOVABLE_DEVICE Flags = 0x00000002
	CKF_HW_SLOT          Flags = 0x00000004

	CKF_RNG                           Flags = 0x00000001
	CKF_WRITE_PROTECTED               Flags = 0x00000002
	CKF_LOGIN_REQUIRED                Flags = 0x00000004
	CKF_USER_PIN_INITIALIZED          Flags = 0x00000008
	CKF_RESTORE_KEY_NOT_NEEDED        Flags = 0x00000020
	CKF_CLOCK_ON_TOKEN                Flags = 0x00000040
	CKF_PROTECTED_AUTHENTICATION_PATH Flags = 0x00000100
	CKF_DUAL_CRYPTO_OPERATIONS        Flags = 0x00000200
	CKF_TOKEN_INITIALIZED             Flags = 0x00000400
	CKF_USER_PIN_COUNT_LOW            Flags = 0x00010000
	CKF_USER_PIN_FINAL_TRY            Flags = 0x00020000
	CKF_USER_PIN_LOCKED               Flags = 0x00040000
	CKF_USER_PIN_TO_BE_CHANGED        Flags = 0x00080000
	CKF_SO_PIN_COUNT_LOW              Flags = 0x00100000
	CKF_SO_PIN_FINAL_TRY              Flags = 0x00200000
	CKF_SO_PIN_LOCKED                 Flags = 0x00400000
	CKF_SO_PIN_TO_BE_CHANGED          Flags = 0x00800000
	CKF_ASYNC_SESSION_SUPPORTED       Flags = 0x04000000

	CKF_RW_SESSION     Flags = 0x00000002
	CKF_SERIAL_SESSION Flags = 0x00000004
	CKF_ASYNC_SESSION  Flags = 0x00000008

	CKF_LIBRARY_CANT_CREATE_OS_THREADS Flags = 0x00000001
	CKF_OS_LOCKING_OK                  Flags = 0x00000002
)

// C_WaitForSlotEvent flags.
const CKF_DONT_BLOCK Flags = 0x00000001

// User types and session states.
const (
	CKU_SO               UserType = 0
	CKU_USER             UserType = 1
	CKU_CONTEXT_SPECIFIC UserType = 2

	CKS_RO_PUBLIC_SESSION State = 0
	CKS_RO_USER_FUNCTIONS State = 1
	CKS_RW_PUBLIC_SESSION State = 2
	CKS_RW_USER_FUNCTIONS State = 3
	CKS_RW_SO_FUNCTIONS   State = 4
)
