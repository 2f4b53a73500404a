package tpmtoken_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// BenchmarkCCMKEMVsFloor: AES-CCM C_Encrypt/C_Decrypt of 1 KiB and 64 KiB
// and C_DecapsulateKey with RSA-OAEP (RSA-2048) and ECDH (P-256), each
// beside the TPM's raw rate for the TPM commands the operation needs, with
// the protection the token must give them, on the same swtpm in the same
// run.
//
// Drift: this machine's speed (and the swtpm's) changes by tens of percent
// within a second, so floor and token run in short alternating blocks
// (floor, token, token, floor, ...: the order swaps every pair), each pair's
// ratio is the floor block's median latency over the token block's, and
// the ratio reported is the median of all pairs' ratios, each round's
// median logged (KEMBENCH_ROUNDS rounds, default 5). The two share one
// swtpm, which serves one connection at a time: each block begins with a
// hand-over (the other side lets go, this one reconnects and reloads its
// objects, the floor starts its session), and one untimed call, on both
// sides alike, so the timed calls are the steady state. The floor's key is
// made once, its commands marshalled once per block (its handles change),
// its client CPU counted over its timed calls only.
//
// The floors:
//   - CCM: TPM2_EncryptDecrypt2 in CBC mode over B0‖payload (the CBC-MAC)
//     and in CTR mode over tag‖payload, in MAX_DIGEST_BUFFER (1024-byte)
//     chunks: for n bytes of payload and no AAD, 2·ceil((n+16)/1024)
//     commands, encryption and decryption alike, with a password session
//     as the token sends them (the data is the caller's).
//   - Decapsulation: TPM2_RSA_Decrypt or TPM2_ECDH_ZGen, its result (the
//     padded secret, Z) encrypted on its way out, then TPM2_Create of the
//     32-byte secret, encrypted on its way in, as a keyed-hash object under
//     the storage key: both over one salted HMAC session kept across calls
//     (floorSession, pqc_bench_test.go), as the token keeps one
//     (tpm/kept_session.go). A floor with the secret in the clear would
//     measure a weaker operation than the token may perform.
func BenchmarkCCMKEMVsFloor(b *testing.B) {
	rounds := 5
	if v := os.Getenv("KEMBENCH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	for _, c := range []string{"CCM-1KiB-encrypt", "CCM-1KiB-decrypt", "CCM-64KiB-encrypt", "CCM-64KiB-decrypt",
		"RSA-OAEP-2048-decapsulate", "ECDH-P256-decapsulate"} {
		b.Run(c, func(b *testing.B) {
			// Calls per block: a block lasts ~5-25 ms, short beside the
			// drift, long beside one hand-over's disturbance.
			n, block := max(b.N, 10), 10
			switch {
			case strings.Contains(c, "64KiB"):
				n, block = max(b.N/8, 6), 3
			case strings.HasPrefix(c, "RSA"):
				block = 5
			}
			pairs := (n + block - 1) / block
			spec := startSwtpm(b)
			l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			h := provision(b, l)
			tok := newTokenCase(b, l, h, c)
			fl := newFloor(b, spec, tok)
			defer fl.close()
			var pairRatios, roundRatios []float64
			var roundRates []string // each round's floor and token rate
			var fAll, tAll []time.Duration
			var tCPU, fCPU time.Duration
			var tCmds uint64
			var calls int
			per := float64(time.Second)
			unit := "ops/s"
			if strings.HasPrefix(c, "CCM") {
				per *= float64(tok.msgLen) / 1e6 // MB/s
				unit = "MB/s"
			}
			for range rounds {
				var rr []float64
				var rf, rt []time.Duration
				for p := range pairs {
					var f, t []time.Duration
					tokBlock := func() {
						tok.run(b, 1) // the hand-over
						before := l.TPMCommands()
						c0 := cpuTime()
						t = tok.run(b, block)
						tCPU += cpuTime() - c0
						tCmds += l.TPMCommands() - before
					}
					floorBlock := func() {
						var cpu time.Duration
						f, cpu = fl.block(b, block)
						fCPU += cpu
					}
					if p%2 == 0 {
						floorBlock()
						tokBlock()
					} else {
						tokBlock()
						floorBlock()
					}
					calls += block
					rf, rt = append(rf, f...), append(rt, t...)
					rr = append(rr, float64(median(f))/float64(median(t)))
				}
				fAll, tAll = append(fAll, rf...), append(tAll, rt...)
				roundRates = append(roundRates, fmt.Sprintf("%.4g:%.4g", per/float64(median(rf)), per/float64(median(rt))))
				pairRatios = append(pairRatios, rr...)
				roundRatios = append(roundRatios, medianF(rr))
			}
			var all []string
			for _, r := range roundRatios {
				all = append(all, fmt.Sprintf("%.2f", r))
			}
			// In the log: a line printed here would split the result line.
			b.Logf("kembench %s rounds %s pairs %d p25 %.2f p75 %.2f", c, strings.Join(all, "/"),
				len(pairRatios), pctF(pairRatios, 25), pctF(pairRatios, 75))
			b.Logf("kembench %s rates %s", c, strings.Join(roundRates, "/"))
			b.ReportMetric(per/float64(median(fAll)), "floor-"+unit)
			b.ReportMetric(per/float64(median(tAll)), "tpm11-"+unit)
			b.ReportMetric(medianF(pairRatios), "ratio")
			b.ReportMetric(float64(tCmds)/float64(calls), "tpm11-cmds/op")
			// This process's CPU per timed call (the swtpm's is its own):
			// the token's, and the floor client's.
			b.ReportMetric(float64(tCPU.Microseconds())/float64(calls), "tpm11-cpu-µs/op")
			b.ReportMetric(float64(fCPU.Microseconds())/float64(calls), "floor-cpu-µs/op")
			b.ReportMetric(float64(fl.cmdsPerOp), "floor-cmds/op")
		})
	}
}

func medianF(v []float64) float64 { return pctF(v, 50) }

func pctF(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tokenCase is one operation through tpmtoken and what its floor needs.
type tokenCase struct {
	l      *tpmtoken.Library
	h      uint64
	kind   string
	msgLen int
	key    uint64 // the AES key or the private key
	m      tpmtoken.Mechanism
	in     []byte // the plaintext, ciphertext or KEM ciphertext
	outCap int
	tmpl   []tpmtoken.Attr
	ct     []byte // the KEM ciphertext (RSA) or the peer's point (ECDH)
}

func newTokenCase(b *testing.B, l *tpmtoken.Library, h uint64, kind string) *tokenCase {
	c := &tokenCase{l: l, h: h, kind: kind}
	fail := func(err error) {
		if err != nil {
			b.Helper()
			b.Fatal(err)
		}
	}
	switch {
	case strings.HasPrefix(kind, "CCM"):
		c.msgLen = 1024
		if strings.Contains(kind, "64KiB") {
			c.msgLen = 65536
		}
		key, err := l.GenerateKey(h, tpmtoken.Mechanism{Type: ck.CKM_AES_KEY_GEN}, []tpmtoken.Attr{{ck.CKA_VALUE_LEN, ulong(16)}})
		fail(err)
		c.key = key
		c.m = ccmMechB(c.msgLen, make([]byte, 12), nil, 16)
		pt := make([]byte, c.msgLen)
		_, _ = rand.Read(pt)
		c.in, c.outCap = pt, c.msgLen+16
		if strings.HasSuffix(kind, "decrypt") {
			fail(l.EncryptInit(h, c.m, key))
			ct, _, err := encrypt(l, h, pt, c.msgLen+16, false)
			fail(err)
			c.in, c.outCap = ct, c.msgLen
		}
	case strings.HasPrefix(kind, "RSA"):
		pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_MODULUS_BITS, ulong(2048)}}, []tpmtoken.Attr{{ck.CKA_UNWRAP, []byte{1}}})
		fail(err)
		pk := publicOf(b, l, h, pub)
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pk.(*rsa.PublicKey), secret, nil)
		fail(err)
		c.key, c.in, c.ct = priv, ct, ct
		c.m = tpmtoken.Mechanism{Type: ck.CKM_RSA_PKCS_OAEP, Param: mech.OAEPParams{HashAlg: ck.CKM_SHA256, MGF: ck.CKG_MGF1_SHA256}}
	default:
		pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_EC_PARAMS, p256}}, []tpmtoken.Attr{{ck.CKA_DERIVE, []byte{1}}})
		fail(err)
		tk, err := publicOf(b, l, h, pub).(*ecdsa.PublicKey).ECDH()
		fail(err)
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		fail(err)
		_ = tk
		c.key, c.in, c.ct = priv, eph.PublicKey().Bytes(), eph.PublicKey().Bytes()
		c.m = tpmtoken.Mechanism{Type: ck.CKM_ECDH1_DERIVE, Param: mech.ECDH1Params{KDF: ck.CKD_NULL}}
	}
	// The new key: a sensitive 32-byte AES session key, which goes into
	// the TPM.
	c.tmpl = []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_AES)},
		{ck.CKA_VALUE_LEN, ulong(32)}}
	return c
}

func ccmMechB(dataLen int, nonce, aad []byte, macLen int) tpmtoken.Mechanism {
	return tpmtoken.Mechanism{Type: ck.CKM_AES_CCM, Param: mech.CCMParams{
		DataLen: ck.ULong(dataLen), Nonce: nonce, AAD: aad, MACLen: ck.ULong(macLen)}}
}

func publicOf(b testing.TB, l *tpmtoken.Library, h, pub uint64) any {
	spki, err := l.GetAttributeValue(h, pub, []ck.AttributeType{ck.CKA_PUBLIC_KEY_INFO})
	if err != nil {
		b.Fatal(err)
	}
	pk, err := x509.ParsePKIXPublicKey(spki[0].Value)
	if err != nil {
		b.Fatal(err)
	}
	return pk
}

// run is n operations through the token, each one's latency.
func (c *tokenCase) run(b *testing.B, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		var err error
		switch {
		case strings.HasSuffix(c.kind, "encrypt"):
			if err = c.l.EncryptInit(c.h, c.m, c.key); err == nil {
				_, _, err = encrypt(c.l, c.h, c.in, c.outCap, false)
			}
		case strings.HasSuffix(c.kind, "decrypt"):
			if err = c.l.DecryptInit(c.h, c.m, c.key); err == nil {
				_, _, err = decrypt(c.l, c.h, c.in, c.outCap, false)
			}
		default:
			var k uint64
			if k, err = c.l.DecapsulateKey(c.h, c.m, c.key, c.tmpl, c.in); err == nil {
				out[i] = time.Since(t0)
				err = c.l.DestroyObject(c.h, k)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		if out[i] == 0 {
			out[i] = time.Since(t0)
		}
	}
	return out
}

// kemFloor is the floor of one case: its own connection to the token's
// swtpm, its own key (made once, reloaded at every block), and its
// commands.
type kemFloor struct {
	c         *tokenCase
	dev       *tpm.Device
	e         *tpm.Engine
	srk, key  *tpm.Loadable
	ct        []byte // the KEM ciphertext for the floor's key
	cmdsPerOp int
}

func newFloor(b *testing.B, spec string, c *tokenCase) *kemFloor {
	dev, err := tpm.Open(spec, "")
	if err != nil {
		b.Fatal(err)
	}
	f := &kemFloor{c: c, dev: dev, e: tpm.NewEngine(dev.TPM, 3)}
	f.srk = &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	var tmpl tpm2.TPMTPublic
	switch {
	case strings.HasPrefix(c.kind, "CCM"):
		tmpl = tpm.AESKeyTemplate(128)
	case strings.HasPrefix(c.kind, "RSA"):
		tmpl = tpm.RSAKeyTemplate(2048)
	default:
		tmpl = tpm.ECCKeyTemplate(tpm2.TPMECCNistP256)
	}
	pub, priv, err := f.e.Create(f.srk, tmpl, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	f.key = &tpm.Loadable{ID: "k", Parent: f.srk, Public: pub, Private: priv}
	if !strings.HasPrefix(c.kind, "CCM") {
		// The token's ciphertext is for the token's key: the floor's
		// is made again for the floor's.
		f.ct = floorKEMInput(b, pub)
	}
	f.release()
	return f
}

// release hands the swtpm back to the token, as the token's library does
// when idle.
func (f *kemFloor) release() {
	f.e.SaveAll()
	f.e.Disconnected()
	_ = f.dev.Release()
}

func (f *kemFloor) close() {
	f.e.FlushAll()
	_ = f.dev.Close()
}

// block is one floor block: the hand-over (reconnect, reload the key, start
// the session: untimed), one untimed operation, n timed ones, the
// hand-over back; their latencies and the client's CPU over the timed ones.
func (f *kemFloor) block(b *testing.B, n int) ([]time.Duration, time.Duration) {
	defer f.release()
	kh, err := f.e.Handle(f.key)
	if err != nil {
		b.Fatal(err)
	}
	sh, err := f.e.Handle(f.srk)
	if err != nil {
		b.Fatal(err)
	}
	var tr transport.TPM = f.dev.TPM
	var op func()
	if strings.HasPrefix(f.c.kind, "CCM") {
		cmds := ccmFloorCmds(f.c.msgLen, uint32(kh.Handle))
		f.cmdsPerOp = len(cmds)
		op = func() {
			for _, cmd := range cmds {
				sendOK(b, tr, cmd)
			}
		}
	} else {
		s := newFloorSession(b, tr, sh)
		defer func() { _, _ = tpm2.FlushContext{FlushHandle: tpm2.TPMHandle(s.handle)}.Execute(tr) }()
		op = f.decapOp(b, tr, s, kh, sh)
		f.cmdsPerOp = 2
	}
	op()
	out := make([]time.Duration, n)
	c0 := cpuTime()
	for i := range out {
		t0 := time.Now()
		op()
		out[i] = time.Since(t0)
	}
	return out, cpuTime() - c0
}

// ccmFloorCmds are one CCM operation's TPM2_EncryptDecrypt2 commands for
// n bytes of payload with AES key handle kh, pre-marshalled.
func ccmFloorCmds(n int, kh uint32) [][]byte {
	var cmds [][]byte
	edc := func(mode tpm2.TPMAlgID, n int) {
		for n > 0 {
			k := min(n, 1024)
			p := tpm2b(make([]byte, k))
			p = append(p, 0) // encrypt
			p = binary.BigEndian.AppendUint16(p, uint16(mode))
			p = append(p, tpm2b(make([]byte, 16))...)
			cmds = append(cmds, rawPQCCmd(uint32(tpm2.TPMCCEncryptDecrypt2), []uint32{kh}, 1, p))
			n -= k
		}
	}
	blocks := (n + 15) / 16 * 16
	edc(tpm2.TPMAlgCBC, 16+blocks)
	edc(tpm2.TPMAlgCTR, 16+n)
	return cmds
}

// decapOp is one decapsulation's two commands over session s: the
// private-key operation with its result encrypted out (attributes 0x41:
// continueSession, encrypt), then TPM2_Create of 32 bytes of it encrypted
// in (0x21: continueSession, decrypt).
func (f *kemFloor) decapOp(b *testing.B, tr transport.TPM, s *floorSession, kh, sh tpm2.NamedHandle) func() {
	var first *floorCmd
	if strings.HasPrefix(f.c.kind, "RSA") {
		p := tpm2b(f.ct)
		p = binary.BigEndian.AppendUint16(p, uint16(tpm2.TPMAlgNull))
		p = append(p, tpm2b(nil)...)
		first = s.command(uint32(tpm2.TPMCCRSADecrypt), []tpm2.TPMHandle{kh.Handle}, []tpm2.TPM2BName{kh.Name}, 0x41, p)
	} else {
		pt := f.ct[1:]
		point := append(tpm2b(pt[:32]), tpm2b(pt[32:])...)
		first = s.command(uint32(tpm2.TPMCCECDHZGen), []tpm2.TPMHandle{kh.Handle}, []tpm2.TPM2BName{kh.Name}, 0x41, tpm2b(point))
	}
	// TPM2_Create's parameters: TPM2B_SENSITIVE_CREATE (empty userAuth,
	// the 32-byte secret), the keyed-hash template, no outsideInfo, no PCRs.
	sens := append([]byte{0, 36, 0, 0, 0, 32}, make([]byte, 32)...)
	tail := append(tpm2.Marshal(tpm2.New2B(tpm.Supplied(tpm.HMACKeyTemplate()))), 0, 0, 0, 0, 0, 0)
	create := s.command(uint32(tpm2.TPMCCCreate), []tpm2.TPMHandle{sh.Handle}, []tpm2.TPM2BName{sh.Name}, 0x21, append(sens, tail...))
	secret := make([]byte, 32)
	return func() {
		rsp := s.run(b, tr, first, nil)
		// The secret's 32 bytes: RSA's padded block's last, ECDH's Z
		// (X of the TPM2B_ECC_POINT); the TPM's work does not depend on
		// which bytes go in.
		if strings.HasPrefix(f.c.kind, "RSA") {
			copy(secret, rsp[len(rsp)-32:])
		} else {
			copy(secret, rsp[4:36])
		}
		s.run(b, tr, create, func(p []byte) { copy(p[6:], secret); copy(p[2:6], []byte{0, 0, 0, 32}) })
	}
}

// newFloorSession is startFloorSession without its cleanup: the floor
// starts one per block and flushes it at the block's end.
func newFloorSession(b *testing.B, tr transport.TPM, srk tpm2.NamedHandle) *floorSession {
	rp, err := tpm2.ReadPublic{ObjectHandle: srk.Handle}.Execute(tr)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		b.Fatal(err)
	}
	ek, err := tpm2.ImportEncapsulationKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	salt, enc, err := tpm2.CreateEncryptedSalt(rand.Reader, ek)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	rsp, err := tpm2.StartAuthSession{TPMKey: srk.Handle, Bind: tpm2.TPMRHNull, NonceCaller: tpm2.TPM2BNonce{Buffer: nonce},
		EncryptedSalt: tpm2.TPM2BEncryptedSecret{Buffer: enc}, SessionType: tpm2.TPMSEHMAC, AuthHash: tpm2.TPMAlgSHA256,
		Symmetric: tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgAES, KeyBits: tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode: tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB)}}.Execute(tr)
	if err != nil {
		b.Fatal(err)
	}
	return &floorSession{handle: uint32(rsp.SessionHandle.HandleValue()),
		key: tpm2.KDFa(crypto.SHA256, salt, "ATH", rsp.NonceTPM.Buffer, nonce, 256), nonceTPM: rsp.NonceTPM.Buffer}
}

// floorKEMInput is a KEM ciphertext for the floor's key pub.
func floorKEMInput(b *testing.B, pub tpm2.TPM2BPublic) []byte {
	pa, err := pub.Contents()
	if err != nil {
		b.Fatal(err)
	}
	pk, err := tpm.PublicKey(pa)
	if err != nil {
		b.Fatal(err)
	}
	switch k := pk.(type) {
	case *rsa.PublicKey:
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k, make([]byte, 32), nil)
		if err != nil {
			b.Fatal(err)
		}
		return ct
	default:
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return eph.PublicKey().Bytes()
	}
}
