package tpmtoken_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/tpm11/tpm11/internal/swtpmtest"

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

// BenchmarkSignPending is C_Sign on an async session of a slow TPM, which
// returns CKR_PENDING: pending-allocs/op is what the calling thread's path
// to CKR_PENDING allocates (the process's mallocs across l.Sign alone; the
// worker, then waiting on the TPM, adds at most its own few).
func BenchmarkSignPending(b *testing.B) {
	l := open(b, swtpmtest.Slow(b, startSwtpm(b), 5*time.Millisecond), b.TempDir())
	defer l.Close()
	h := provision(b, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN}, []tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	a, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION|ck.CKF_ASYNC_SESSION)
	if err != nil {
		b.Fatal(err)
	}
	m, data := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, []byte("bench")
	var before, after runtime.MemStats
	var mallocs uint64
	n := max(b.N, 10)
	for i := 0; i < n; i++ {
		if err := l.SignInit(a, m, priv); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&before)
		_, err := l.Sign(a, data, tpmtoken.Dest{Cap: 64})
		runtime.ReadMemStats(&after)
		if ck.ToRV(err) != ck.CKR_PENDING {
			b.Fatalf("C_Sign on a slow TPM: %v, not CKR_PENDING", err)
		}
		mallocs += after.Mallocs - before.Mallocs
		for {
			if _, done, _ := l.AsyncComplete(a, "C_Sign", true); done {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(mallocs)/float64(n), "pending-allocs/op")
}
