package tpmtoken_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// manyKeys is how many keys BenchmarkManyKeys signs with round-robin: more
// than swtpm's 3 transient object slots, so every signature needs a key the
// TPM does not hold.
const manyKeys = 16

// BenchmarkManyKeys signs from one session on one thread with ECDSA P-256,
// round-robin over 16 keys, beside the same loop on 1 key, in one library
// on one swtpm, interleaved round by round (BENCH_ROUNDS, 3 by default):
// the 16-key rate over the 1-key rate in each round (the 1-key loop runs
// before and after the 16-key one, for the machine's drift; the median
// round's ratio is the figure) and the TPM commands each C_Sign of the
// 16-key loop costs.
func BenchmarkManyKeys(b *testing.B) {
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: startSwtpm(b), Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	h := provision(b, l)
	keys := make([]uint64, manyKeys)
	for i := range keys {
		if _, keys[i], err = l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, nil); err != nil {
			b.Fatal(err)
		}
	}
	// N signatures per loop (the bench's N, 400 by default): -benchtime 1x.
	n := 400
	if v, err := strconv.Atoi(os.Getenv("N")); err == nil && v > 0 {
		n = v
	}
	n = max(n, b.N)
	// loop signs n times with keys[i%len(keys)], after one untimed turn
	// over them all (the first use of a key loads it from its blobs), and
	// returns signs/s and TPM commands per sign.
	loop := func(keys []uint64) (float64, float64) {
		one := func(k uint64) {
			if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}, k); err != nil {
				b.Fatal(err)
			}
			if _, _, err := sign(l, h, []byte("bench"), 64, false); err != nil {
				b.Fatal(err)
			}
		}
		for _, k := range keys {
			one(k)
		}
		cmds := l.TPMCommands()
		t0 := time.Now()
		for i := 0; i < n; i++ {
			one(keys[i%len(keys)])
		}
		d := time.Since(t0)
		return float64(n) / d.Seconds(), float64(l.TPMCommands()-cmds) / float64(n)
	}
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	var ratios []float64
	var one, many, cmds float64
	for r := 0; r < rounds; r++ {
		before, _ := loop(keys[:1])
		r16, c := loop(keys)
		after, _ := loop(keys[:1])
		r1 := (before + after) / 2
		ratios = append(ratios, r16/r1)
		one, many, cmds = one+r1/float64(rounds), many+r16/float64(rounds), c
	}
	sorted := slices.Clone(ratios)
	slices.Sort(sorted)
	b.ReportMetric(one, "1key-signs/s")
	b.ReportMetric(many, "16keys-signs/s")
	b.ReportMetric(sorted[(len(sorted)-1)/2], "ratio")
	b.ReportMetric(cmds, "cmds/sign")
	rs := ""
	for i, r := range ratios {
		rs += fmt.Sprintf("%s%.2f", map[bool]string{true: "/"}[i > 0], r)
	}
	b.Logf("many-keys rounds %s", rs) // for bench.sh's row of every round
}
