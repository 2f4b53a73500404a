package tpmtoken_test

import (
	"crypto/sha512"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// BenchmarkHashMLDSAVsFloor: HashML-DSA-65/SHA-384 signatures of a 32-byte
// message through the token (C_SignInit + C_Sign with
// CKM_HASH_ML_DSA_SHA384) beside the TPM's own rate for the one command
// it needs, TPM2_SignDigest of the SHA-384 digest (password session,
// pre-marshalled, its own connection and fwtpm_server), in alternating
// rounds whose ratios are all printed.
func BenchmarkHashMLDSAVsFloor(b *testing.B) {
	msg := make([]byte, 32)
	const rounds = 5
	per := max(b.N/rounds, 10)
	floor := hashMLDSAFloor(b, msg)
	lib, cmds := hashMLDSAToken(b, msg)
	var fs, ls []time.Duration
	for r := range rounds {
		f, t := floor(per), lib(per)
		if b.N > 1 {
			b.Log(fmt.Sprintf("HashML-DSA-65/SHA-384 round %d: floor %.0f/s, token %.0f/s, ratio %.3f", r+1, rate(f), rate(t), float64(median(f))/float64(median(t))))
		}
		fs, ls = append(fs, f...), append(ls, t...)
	}
	b.ReportMetric(cmds(), "tpm11-cmds/op")
	b.ReportMetric(rate(fs), "floor-ops/s")
	b.ReportMetric(rate(ls), "tpm11-ops/s")
	b.ReportMetric(float64(median(fs))/float64(median(ls)), "ratio")
}

func timedN(n int, call func()) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		call()
		out[i] = time.Since(t0)
	}
	return out
}

func hashMLDSAFloor(b *testing.B, msg []byte) func(n int) []time.Duration {
	f := swtpmtest.StartFwTPM(b)
	tr := f.Transport(b)
	e := tpm.NewEngine(tr, 8)
	b.Cleanup(e.FlushAll)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	pub, priv, err := e.CreatePQC(srk, tpm.HashMLDSAKeyTemplate(tpm.MLDSA_65, tpm2.TPMAlgSHA384), nil)
	if err != nil {
		b.Fatal(err)
	}
	kh, err := e.Handle(&tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv})
	if err != nil {
		b.Fatal(err)
	}
	d := sha512.Sum384(msg)
	// context (empty), digest, the NULL TPMT_TK_HASHCHECK.
	params := append(append(tpm2b(nil), tpm2b(d[:])...), 0x80, 0x24, 0x40, 0, 0, 7, 0, 0)
	cmd := rawPQCCmd(0x1A6, []uint32{uint32(kh.Handle)}, 1, params)
	return func(n int) []time.Duration { return timedN(n, func() { sendOK(b, tr, cmd) }) }
}

func hashMLDSAToken(b *testing.B, msg []byte) (func(n int) []time.Duration, func() float64) {
	f := swtpmtest.StartFwTPM(b)
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: f.Spec, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	h := provision(b, l)
	_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_65)}},
		[]tpmtoken.Attr{{ck.CKA_ALLOWED_MECHANISMS, mechList(ck.CKM_HASH_ML_DSA_SHA384)}})
	if err != nil {
		b.Fatal(err)
	}
	var calls int
	var cmds uint64
	perCall := func() float64 { return float64(cmds) / float64(calls) }
	return func(n int) []time.Duration {
		before := l.TPMCommands()
		out := timedN(n, func() {
			if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_HASH_ML_DSA_SHA384}, priv); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Sign(h, msg, tpmtoken.Dest{Cap: 4000}); err != nil {
				b.Fatal(err)
			}
		})
		cmds += l.TPMCommands() - before
		calls += n
		return out
	}, perCall
}
