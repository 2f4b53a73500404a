package tpmtoken_test

import (
	"crypto/mlkem"
	"testing"
	"time"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
)

func TestZZScratch(t *testing.T) {
	f := swtpmtest.StartFwTPM(t)
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: f.Spec, Store: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := provision(t, l)
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_KEM_768)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.GetAttributeValue(h, pub, []ck.AttributeType{ck.CKA_VALUE})
	ek, _ := mlkem.NewEncapsulationKey768(got[0].Value)
	_, ct := ek.Encapsulate()
	tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}}
	var dd, dx time.Duration
	n := 3000
	for range n {
		t0 := time.Now()
		k, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, priv, tmpl, ct)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		l.DestroyObject(h, k)
		dd += t1.Sub(t0)
		dx += time.Since(t1)
	}
	t.Logf("decap %v destroy %v", dd/time.Duration(n), dx/time.Duration(n))
}
