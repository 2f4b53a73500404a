package mech

import (
	"slices"

	"github.com/tpm11/tpm11/ck"
)

// KeyKind says which of the TPM's probed key sizes a mechanism's info
// reports.
type KeyKind int

const (
	KindNone   KeyKind = iota
	KindRSA            // modulus bits
	KindEC             // curve bits
	KindAES            // key bytes
	KindSecret         // generic secret (HMAC) bytes: the TPM's keyed-hash data
)

// Info is CK_MECHANISM_INFO; sizes in bits for RSA and EC keys, in bytes
// for secret keys, as the spec has them.
type Info struct {
	Min, Max uint64
	Flags    ck.Flags
}

type infoEntry struct {
	kind  KeyKind
	flags ck.Flags
}

const (
	hw    = ck.CKF_HW
	ecF   = ck.CKF_EC_F_P | ck.CKF_EC_OID | ck.CKF_EC_ECPARAMETERS | ck.CKF_EC_UNCOMPRESS // ecParameters: only those of a named curve (ecparams.go)
	sigF  = hw | ck.CKF_SIGN | ck.CKF_VERIFY
	recF  = ck.CKF_SIGN_RECOVER | ck.CKF_VERIFY_RECOVER
	wrapF = ck.CKF_WRAP | ck.CKF_UNWRAP
	aesF  = hw | ck.CKF_ENCRYPT | ck.CKF_DECRYPT
	ecSig = sigF | ecF
	kemF  = ck.CKF_ENCAPSULATE | ck.CKF_DECAPSULATE // C_EncapsulateKey/C_DecapsulateKey (tpmtoken/encapsulate.go)
)

// MaxSecretBytes is MAX_SYM_DATA: the most a keyed-hash object may hold.
const MaxSecretBytes = 128

// infos lists only what works; sizes come from the TPM.
var infos = map[ck.MechType]infoEntry{
	ck.CKM_EC_KEY_PAIR_GEN: {KindEC, hw | ck.CKF_GENERATE_KEY_PAIR | ecF},
	ck.CKM_ECDH1_DERIVE:    {KindEC, hw | ck.CKF_DERIVE | ecF | kemF},
	// Cofactor ECDH is plain ECDH on the token's curves (all have cofactor
	// 1): C_DeriveKey and encapsulation (tpmtoken/derive.go).
	ck.CKM_ECDH1_COFACTOR_DERIVE: {KindEC, hw | ck.CKF_DERIVE | ecF | kemF},
	ck.CKM_RSA_PKCS_KEY_PAIR_GEN: {KindRSA, hw | ck.CKF_GENERATE_KEY_PAIR},
	ck.CKM_RSA_PKCS:              {KindRSA, sigF | recF | wrapF | kemF | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_RSA_X_509:             {KindRSA, sigF | recF | kemF | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_RSA_PKCS_OAEP:         {KindRSA, hw | wrapF | kemF | ck.CKF_ENCRYPT | ck.CKF_DECRYPT},
	ck.CKM_AES_KEY_WRAP:          {KindAES, hw | wrapF},
	ck.CKM_AES_KEY_WRAP_KWP:      {KindAES, hw | wrapF},
	ck.CKM_AES_KEY_GEN:           {KindAES, hw | ck.CKF_GENERATE},
	// CCM is two AES passes in the TPM, CBC and CTR (mech/ccm.go).
	ck.CKM_AES_CCM:                {KindAES, aesF | ck.CKF_MESSAGE_ENCRYPT | ck.CKF_MESSAGE_DECRYPT | ck.CKF_MULTI_MESSAGE},
	ck.CKM_GENERIC_SECRET_KEY_GEN: {KindSecret, hw | ck.CKF_GENERATE},
}

func init() {
	for m, s := range signatures {
		e, ok := infos[m]
		switch {
		case ok: // listed above with its other uses
		case s.mac != nil:
			e = infoEntry{KindSecret, sigF}
		case s.keyType == ck.CKK_EC:
			e = infoEntry{KindEC, ecSig}
		default:
			e = infoEntry{KindRSA, sigF}
		}
		e.flags |= ck.CKF_MESSAGE_SIGN | ck.CKF_MESSAGE_VERIFY
		if s.hash != nil || s.mac != nil {
			e.flags |= ck.CKF_MULTI_MESSAGE
		}
		infos[m] = e
	}
	for m := range aesModes {
		infos[m] = infoEntry{KindAES, aesF}
	}
	for _, h := range Hashes {
		infos[h.Digest] = infoEntry{KindNone, ck.CKF_DIGEST}
	}
}

// List is every mechanism whose key kind has sizes (sizes returns the
// TPM's range of a kind, max 0 when it has none), sorted.
func List(sizes func(KeyKind) (uint64, uint64)) []ck.MechType {
	var out []ck.MechType
	for m, e := range infos {
		if _, hi := sizes(e.kind); e.kind != KindNone && hi == 0 {
			continue
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// InfoOf is CK_MECHANISM_INFO of m with the TPM's sizes.
func InfoOf(m ck.MechType, sizes func(KeyKind) (uint64, uint64)) (Info, error) {
	e, ok := infos[m]
	if !ok {
		return Info{}, ck.E(ck.CKR_MECHANISM_INVALID)
	}
	info := Info{Flags: e.flags}
	if e.kind != KindNone {
		info.Min, info.Max = sizes(e.kind)
	}
	return info, nil
}

// Key sizes the token asks a TPM about (TPM2_TestParms); it offers those
// the TPM accepts.
var (
	RSABits = []int{1024, 2048, 3072, 4096}
	AESBits = []int{128, 192, 256}
)
