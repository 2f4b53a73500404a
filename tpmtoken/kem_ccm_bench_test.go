package tpmtoken_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
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
// beside the TPM's raw rate for the TPM commands the operation needs, on
// the same swtpm in the same run. The floor's commands are marshalled once
// and sent on a connection of its own, opened while the token has let go
// of the swtpm (tpmtoken.ReleaseAfter); the token runs between two floor
// runs, KEMBENCH_ROUNDS times (default 5), and each round's ratio (the
// mean of the two floors' median latencies over the token's median) is
// logged, the median ratio reported.
//
// The floors:
//   - CCM: TPM2_EncryptDecrypt2 in CBC mode over B0‖payload (the CBC-MAC)
//     and in CTR mode over tag‖payload, in MAX_DIGEST_BUFFER (1024-byte)
//     chunks: for n bytes of payload and no AAD, 2·ceil((n+16)/1024)
//     commands, encryption and decryption alike.
//   - Decapsulation: TPM2_RSA_Decrypt or TPM2_ECDH_ZGen, then TPM2_Create
//     of the 32-byte result as a sensitive keyed-hash object under the
//     storage key: the one command that puts a sensitive result into the
//     TPM. The floor sends both with password sessions, the secret in the
//     clear: the TPM's bare minimum. The token sends the same two commands
//     (plus, now and then, the start of the salted session it keeps), ECDH's
//     Z and the new key's value encrypted on the bus with an HMAC per
//     command.
func BenchmarkCCMKEMVsFloor(b *testing.B) {
	rounds := 5
	if v := os.Getenv("KEMBENCH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	for _, c := range []string{"CCM-1KiB-encrypt", "CCM-1KiB-decrypt", "CCM-64KiB-encrypt", "CCM-64KiB-decrypt",
		"RSA-OAEP-2048-decapsulate", "ECDH-P256-decapsulate"} {
		b.Run(c, func(b *testing.B) {
			n := max(b.N, 10)
			if strings.Contains(c, "64KiB") {
				n = max(b.N/16, 5)
			}
			spec := startSwtpm(b)
			l, err := tpmtoken.Open(tpmtoken.Config{TPM: spec, Store: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			h := provision(b, l)
			tok := newTokenCase(b, l, h, c)
			var ratios []float64
			var lastTok, lastFloor time.Duration
			var cmds float64
			var cpu, floorCPU time.Duration
			for range rounds {
				c0 := cpuTime()
				f1 := median(floorRun(b, spec, c, tok, n))
				floorCPU = cpuTime() - c0
				before := l.TPMCommands()
				c0 = cpuTime()
				t := median(tok.run(b, n))
				cpu = cpuTime() - c0
				cmds = float64(l.TPMCommands()-before) / float64(n)
				f2 := median(floorRun(b, spec, c, tok, n))
				lastTok, lastFloor = t, (f1+f2)/2
				ratios = append(ratios, float64(lastFloor)/float64(t))
			}
			var all []string
			for _, r := range ratios {
				all = append(all, fmt.Sprintf("%.2f", r))
			}
			sorted := append([]float64(nil), ratios...)
			for i := range sorted {
				for j := i + 1; j < len(sorted); j++ {
					if sorted[j] < sorted[i] {
						sorted[i], sorted[j] = sorted[j], sorted[i]
					}
				}
			}
			// In the log: a line printed here would split the result line.
			b.Logf("kembench %s rounds %s", c, strings.Join(all, "/"))
			per := float64(time.Second)
			unit := "ops/s"
			if strings.HasPrefix(c, "CCM") {
				per *= float64(tok.msgLen) / 1e6 // MB/s
				unit = "MB/s"
			}
			b.ReportMetric(per/float64(lastFloor), "floor-"+unit)
			b.ReportMetric(per/float64(lastTok), "tpm11-"+unit)
			b.ReportMetric(sorted[len(sorted)/2], "ratio")
			b.ReportMetric(cmds, "tpm11-cmds/op")
			// This process's CPU per operation (the swtpm's is its own):
			// the token's, and the floor client's (with its key setup).
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "tpm11-cpu-µs/op")
			b.ReportMetric(float64(floorCPU.Microseconds())/float64(n), "floor-cpu-µs/op")
			b.ReportMetric(float64(len(tok.floorCmds(b, nil))), "floor-cmds/op")
		})
	}
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
	l       *tpmtoken.Library
	h       uint64
	kind    string
	msgLen  int
	key     uint64 // the AES key or the private key
	m       tpmtoken.Mechanism
	in      []byte // the plaintext, ciphertext or KEM ciphertext
	outCap  int
	tmpl    []tpmtoken.Attr
	pubArea tpm2.TPM2BPublic // the token's key's public area, for the floor's own key
	ct      []byte           // the KEM ciphertext (RSA) or the peer's point (ECDH)
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

// floorCmds are the pre-marshalled commands of one operation on the
// floor's key handle kh (nil: only their number matters), and the
// handle of the storage key for TPM2_Create.
func (c *tokenCase) floorCmds(b *testing.B, hs []uint32) [][]byte {
	if hs == nil {
		hs = []uint32{0x80000000, 0x80000001}
	}
	kh, srk := hs[0], hs[1]
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
	switch {
	case strings.HasPrefix(c.kind, "CCM"):
		blocks := (c.msgLen + 15) / 16 * 16
		edc(tpm2.TPMAlgCBC, 16+blocks)
		edc(tpm2.TPMAlgCTR, 16+c.msgLen)
		return cmds
	case strings.HasPrefix(c.kind, "RSA"):
		p := tpm2b(c.ct)
		p = binary.BigEndian.AppendUint16(p, uint16(tpm2.TPMAlgNull))
		p = append(p, tpm2b(nil)...)
		cmds = append(cmds, rawPQCCmd(uint32(tpm2.TPMCCRSADecrypt), []uint32{kh}, 1, p))
	default:
		pt := c.ct[1:]
		point := append(tpm2b(pt[:32]), tpm2b(pt[32:])...)
		cmds = append(cmds, rawPQCCmd(uint32(tpm2.TPMCCECDHZGen), []uint32{kh}, 1, tpm2b(point)))
	}
	// TPM2_Create of a keyed-hash object holding 32 bytes.
	sens := tpm2.Marshal(tpm2.TPMSSensitiveCreate{Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: make([]byte, 32)})})
	pub := tpm2.Marshal(tpm2.New2B(tpm2.TPMTPublic{
		Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true, NoDA: true},
		Parameters:       tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
	}))
	p := append(tpm2b(sens), pub...)
	p = append(p, tpm2b(nil)...)            // outsideInfo
	p = binary.BigEndian.AppendUint32(p, 0) // no PCRs
	cmds = append(cmds, rawPQCCmd(uint32(tpm2.TPMCCCreate), []uint32{srk}, 1, p))
	return cmds
}

// floorRun is n operations' TPM commands, pre-marshalled, on a connection
// of the floor's own to the token's swtpm; the floor's keys are made (and
// flushed) outside the timing.
func floorRun(b *testing.B, spec string, kind string, c *tokenCase, n int) []time.Duration {
	dev, err := tpm.Open(spec, "")
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	var tr transport.TPM = dev
	e := tpm.NewEngine(tr, 3)
	defer e.FlushAll()
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	var tmpl tpm2.TPMTPublic
	switch {
	case strings.HasPrefix(kind, "CCM"):
		tmpl = tpm.AESKeyTemplate(128)
	case strings.HasPrefix(kind, "RSA"):
		tmpl = tpm.RSAKeyTemplate(2048)
	default:
		tmpl = tpm.ECCKeyTemplate(tpm2.TPMECCNistP256)
	}
	pub, priv, err := e.Create(srk, tmpl, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}
	kh, err := e.Handle(key)
	if err != nil {
		b.Fatal(err)
	}
	sh, err := e.Handle(srk)
	if err != nil {
		b.Fatal(err)
	}
	if !strings.HasPrefix(kind, "CCM") {
		// The floor's own key pair: the token's ciphertext is for the
		// token's key, so the floor's is made again for the floor's.
		c = floorKEMInput(b, c, pub)
	}
	cmds := c.floorCmds(b, []uint32{uint32(kh.Handle), uint32(sh.Handle)})
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		for _, cmd := range cmds {
			sendOK(b, tr, cmd)
		}
		out[i] = time.Since(t0)
	}
	return out
}

// floorKEMInput is c with a ciphertext for the floor's key pub.
func floorKEMInput(b *testing.B, c *tokenCase, pub tpm2.TPM2BPublic) *tokenCase {
	pa, err := pub.Contents()
	if err != nil {
		b.Fatal(err)
	}
	pk, err := tpm.PublicKey(pa)
	if err != nil {
		b.Fatal(err)
	}
	f := *c
	switch k := pk.(type) {
	case *rsa.PublicKey:
		secret := make([]byte, 32)
		if f.ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, k, secret, nil); err != nil {
			b.Fatal(err)
		}
	default:
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		f.ct = eph.PublicKey().Bytes()
	}
	return &f
}
