package tpmtoken_test

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// BenchmarkSignVsFloor measures, in one run on identical swtpms, the raw
// TPM floor (go-tpm TPM2_Sign on a loaded key over a persistent connection)
// and a full C_SignInit+C_Sign through tpmtoken, and reports their ratio.
func BenchmarkSignVsFloor(b *testing.B) {
	for _, kind := range []string{"ECDSA-P256", "RSA2048-PKCS1"} {
		b.Run(kind, func(b *testing.B) {
			n := max(b.N, 20)
			floor := floorSigns(b, kind, n)
			lib := tokenSigns(b, kind, n)
			b.ReportMetric(float64(time.Second)/float64(median(floor)), "floor-signs/s")
			b.ReportMetric(float64(time.Second)/float64(median(lib)), "tpm11-signs/s")
			b.ReportMetric(float64(median(floor))/float64(median(lib)), "ratio")
			b.ReportMetric(float64(pct(lib, 99).Microseconds()), "tpm11-p99-µs")
		})
	}
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func floorSigns(b *testing.B, kind string, n int) []time.Duration {
	tr := swtpmtest.Start(b)
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	tmpl, scheme := tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), tpm2.TPMAlgECDSA
	if kind != "ECDSA-P256" {
		tmpl, scheme = tpm.RSAKeyTemplate(2048), tpm2.TPMAlgRSASSA
	}
	pub, priv, err := e.Create(srk, tmpl, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}
	h, err := e.Handle(key)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	cmd := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: d[:]},
		InScheme: tpm2.TPMTSigScheme{Scheme: scheme,
			Details: tpm2.NewTPMUSigScheme(scheme, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
	}
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		if _, err := cmd.Execute(tr); err != nil {
			b.Fatal(err)
		}
		out[i] = time.Since(t0)
	}
	e.FlushAll()
	return out
}

func tokenSigns(b *testing.B, kind string, n int) []time.Duration {
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
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		if err := l.SignInit(h, tpmtoken.Mechanism{Type: signMech}, priv); err != nil {
			b.Fatal(err)
		}
		if _, _, err := sign(l, h, []byte("bench"), sigLen, false); err != nil {
			b.Fatal(err)
		}
		out[i] = time.Since(t0)
	}
	return out
}

// BenchmarkCommands counts TPM commands from start to logged in, and per
// steady-state sign.
func BenchmarkCommands(b *testing.B) {
	spec, store := startSwtpm(b), b.TempDir()
	l := open(b, spec, store)
	h := provision(b, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}, {ck.CKA_EC_PARAMS, p256}},
		[]tpmtoken.Attr{{ck.CKA_TOKEN, []byte{1}}})
	if err != nil {
		b.Fatal(err)
	}
	l.Close()

	l = open(b, spec, store)
	defer l.Close()
	s, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	if err := l.Login(s, ck.CKU_USER, []byte("userpin")); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.TPMCommands()), "cmds-to-login")
	_ = priv
	if err := l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}); err != nil {
		b.Fatal(err)
	}
	keys, _ := l.FindObjects(s, 1)
	_ = l.FindObjectsFinal(s)
	sign := func() {
		if err := l.SignInit(s, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, keys[0]); err != nil {
			b.Fatal(err)
		}
		if _, _, err := sign(l, s, []byte("x"), 64, false); err != nil {
			b.Fatal(err)
		}
	}
	sign() // first use loads the storage key and the key
	before := l.TPMCommands()
	n := max(b.N, 10)
	for i := 0; i < n; i++ {
		sign()
	}
	b.ReportMetric(float64(l.TPMCommands()-before)/float64(n), "cmds/sign")
}

// BenchmarkManyObjects: C_Initialize and a find by CKA_ID with 10,000
// objects in the store.
func BenchmarkManyObjects(b *testing.B) {
	spec, dir := startSwtpm(b), b.TempDir()
	l := open(b, spec, dir)
	h := provision(b, l)
	for i := 0; i < 10000; i++ {
		if _, err := l.CreateObject(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_DATA)}, {ck.CKA_TOKEN, []byte{1}},
			{ck.CKA_LABEL, []byte{byte(i), byte(i >> 8)}}}); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	var initT, firstFind, find time.Duration
	for i := 0; i < max(b.N, 3); i++ {
		t0 := time.Now()
		l = open(b, spec, dir)
		initT += time.Since(t0)
		s, _ := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
		t0 = time.Now()
		_ = l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_LABEL, []byte{7, 7}}})
		firstFind += time.Since(t0)
		_ = l.FindObjectsFinal(s)
		t0 = time.Now()
		_ = l.FindObjectsInit(s, []tpmtoken.Attr{{ck.CKA_LABEL, []byte{8, 8}}})
		got, _ := l.FindObjects(s, 10)
		find += time.Since(t0)
		if len(got) != 1 {
			b.Fatalf("found %d", len(got))
		}
		_ = l.FindObjectsFinal(s)
		l.Close()
	}
	n := float64(max(b.N, 3))
	b.ReportMetric(float64(initT.Microseconds())/n/1000, "init-ms")
	b.ReportMetric(float64(firstFind.Microseconds())/n/1000, "first-find-ms")
	b.ReportMetric(float64(find.Microseconds())/n/1000, "find-ms")
}
