package tpmtoken_test

import (
	"testing"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// BenchmarkSignAllocs is one steady-state C_SignInit+C_Sign per op through
// tpmtoken (ECDSA-SHA256 and SHA256-RSA-PKCS), for -benchmem and
// -cpuprofile: the module's own work per signature, less cgo.
func BenchmarkSignAllocs(b *testing.B) {
	for _, kind := range []string{"ECDSA-P256", "RSA2048-PKCS1"} {
		b.Run(kind, func(b *testing.B) {
			l, err := tpmtoken.Open(tpmtoken.Config{TPM: startSwtpm(b), Store: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			h := provision(b, l)
			mech, pubT := tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}
			signMech, sigLen := ck.CKM_ECDSA_SHA256, 64
			if kind != "ECDSA-P256" {
				mech, pubT = tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}
				signMech, sigLen = ck.CKM_SHA256_RSA_PKCS, 256
			}
			_, priv, err := l.GenerateKeyPair(h, mech, pubT, nil)
			if err != nil {
				b.Fatal(err)
			}
			data, buf := []byte("bench"), make([]byte, sigLen)
			one := func() {
				if err := l.SignInit(h, tpmtoken.Mechanism{Type: signMech}, priv); err != nil {
					b.Fatal(err)
				}
				out, err := l.Sign(h, data, tpmtoken.Dest{Cap: len(buf)})
				if err != nil || len(out) != sigLen {
					b.Fatal(err)
				}
				copy(buf, out)
			}
			one()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				one()
			}
		})
	}
}
