package tpmtoken_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// BenchmarkPQCVsFloor: ML-DSA-65 signatures and ML-KEM-768
// decapsulations through the token (C_Sign, C_DecapsulateKey) beside the
// TPM's own rate for the same commands with the same protection,
// pre-marshalled and sent on a connection of their own (the floor), each
// on its own fwtpm_server, in alternating rounds whose ratios are all
// printed ("round i: floor F/s, token T/s, ratio R").
//
// The ML-KEM floor is what C_DecapsulateKey must have the TPM do: a
// TPM2_Decapsulate whose shared secret comes back encrypted and a
// TPM2_Create that takes it, encrypted, into a new keyed-hash key, both
// over one salted HMAC session kept across calls (its nonces, HMACs and
// AES-CFB computed per command, nothing else); "decap-only" is the ratio
// to TPM2_Decapsulate alone over that session.
func BenchmarkPQCVsFloor(b *testing.B) {
	msg := make([]byte, 32)
	for _, kind := range []string{"ML-DSA-65-sign", "ML-KEM-768-decapsulate"} {
		b.Run(kind, func(b *testing.B) {
			const rounds = 5
			per := max(b.N/rounds, 10)
			floor, decapOnly := pqcFloor(b, kind, msg)
			lib, cmds := pqcToken(b, kind, msg)
			var fs, ls, ds []time.Duration
			for r := range rounds {
				f := floor(per)
				var d []time.Duration
				if decapOnly != nil {
					d = decapOnly(per)
				}
				t := lib(per)
				// One line a round, from the run that reports (the
				// testing package keeps the first 10 lines of the log).
				if b.N > 1 {
					line := fmt.Sprintf("%s round %d: floor %.0f/s, token %.0f/s, ratio %.3f", kind, r+1, rate(f), rate(t), float64(median(f))/float64(median(t)))
					if d != nil {
						line += fmt.Sprintf("; decap-only %.0f/s, ratio %.3f", rate(d), float64(median(d))/float64(median(t)))
					}
					b.Log(line)
				}
				fs, ls, ds = append(fs, f...), append(ls, t...), append(ds, d...)
			}
			b.ReportMetric(cmds(), "tpm11-cmds/op")
			b.ReportMetric(rate(fs), "floor-ops/s")
			b.ReportMetric(rate(ls), "tpm11-ops/s")
			b.ReportMetric(float64(median(fs))/float64(median(ls)), "ratio")
			if ds != nil {
				b.ReportMetric(float64(median(ds))/float64(median(ls)), "decap-only-ratio")
			}
		})
	}
}

func rate(d []time.Duration) float64 { return float64(time.Second) / float64(median(d)) }

// rawCmd marshals a command: tag, size, code, the handles, then (with
// password sessions of empty auth for the first nAuth handles) the
// parameters.
func rawPQCCmd(cc uint32, handles []uint32, nAuth int, params []byte) []byte {
	tag := uint16(0x8001)
	if nAuth > 0 {
		tag = 0x8002
	}
	c := binary.BigEndian.AppendUint16(nil, tag)
	c = binary.BigEndian.AppendUint32(c, 0)
	c = binary.BigEndian.AppendUint32(c, cc)
	for _, h := range handles {
		c = binary.BigEndian.AppendUint32(c, h)
	}
	if nAuth > 0 {
		c = binary.BigEndian.AppendUint32(c, uint32(9*nAuth))
		for range nAuth {
			c = append(c, 0x40, 0, 0, 9, 0, 0, 0, 0, 0) // TPM_RS_PW, no nonce, no attributes, empty password
		}
	}
	c = append(c, params...)
	binary.BigEndian.PutUint32(c[2:], uint32(len(c)))
	return c
}

func sendOK(b *testing.B, tr transport.TPM, cmd []byte) []byte {
	rsp, err := tr.Send(cmd)
	if err != nil {
		b.Fatal(err)
	}
	if len(rsp) < 10 || binary.BigEndian.Uint32(rsp[6:]) != 0 {
		b.Fatalf("TPM error %x", rsp)
	}
	return rsp
}

func tpm2b(v []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(v))), v...) }

// pqcFloor sets up the floor of kind and returns it, n calls at a time
// (for ML-KEM also TPM2_Decapsulate alone).
func pqcFloor(b *testing.B, kind string, msg []byte) (floor, decapOnly func(n int) []time.Duration) {
	f := swtpmtest.StartFwTPM(b)
	tr := f.Transport(b)
	e := tpm.NewEngine(tr, 8)
	b.Cleanup(e.FlushAll)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	tmpl := tpm.MLDSAKeyTemplate(tpm.MLDSA_65)
	if kind != "ML-DSA-65-sign" {
		tmpl = tpm.MLKEMKeyTemplate(tpm.MLKEM_768)
	}
	pub, priv, err := e.CreatePQC(srk, tmpl, nil)
	if err != nil {
		b.Fatal(err)
	}
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}
	kh, err := e.Handle(key)
	if err != nil {
		b.Fatal(err)
	}
	h := uint32(kh.Handle)
	timed := func(n int, call func()) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			t0 := time.Now()
			call()
			out[i] = time.Since(t0)
		}
		return out
	}
	if kind == "ML-DSA-65-sign" {
		start := rawPQCCmd(0x1AA, []uint32{h}, 0, append(tpm2b(nil), tpm2b(nil)...))
		return func(n int) []time.Duration {
			return timed(n, func() {
				rsp := sendOK(b, tr, start)
				seq := binary.BigEndian.Uint32(rsp[10:])
				sendOK(b, tr, rawPQCCmd(0x1A4, []uint32{seq, h}, 2, tpm2b(msg)))
			})
		}, nil
	}
	p, _ := tpm.PublicOf(pub)
	ek, err := mlkem.NewEncapsulationKey768(p.Unique)
	if err != nil {
		b.Fatal(err)
	}
	_, ct := ek.Encapsulate()
	sh, err := e.Handle(srk)
	if err != nil {
		b.Fatal(err)
	}
	s := startFloorSession(b, tr, sh)
	decap := s.command(0x1A8, []tpm2.TPMHandle{kh.Handle}, []tpm2.TPM2BName{kh.Name}, 0x41, tpm2b(ct))
	// TPM2_Create's parameters: TPM2B_SENSITIVE_CREATE (empty userAuth,
	// the 32-byte secret), the keyed-hash template, no outsideInfo, no PCRs.
	sens := append([]byte{0, 36, 0, 0, 0, 32}, make([]byte, 32)...)
	tail := append(tpm2.Marshal(tpm2.New2B(tpm.Supplied(tpm.HMACKeyTemplate()))), 0, 0, 0, 0, 0, 0)
	create := s.command(uint32(tpm2.TPMCCCreate), []tpm2.TPMHandle{sh.Handle}, []tpm2.TPM2BName{sh.Name}, 0x21, append(sens, tail...))
	secret := make([]byte, 32)
	decapsulate := func() {
		rsp := s.run(b, tr, decap, nil)
		copy(secret, rsp[2:]) // the decrypted TPM2B_SHARED_SECRET
	}
	return func(n int) []time.Duration {
			return timed(n, func() {
				decapsulate()
				s.run(b, tr, create, func(p []byte) { copy(p[6:], secret); copy(p[2:6], []byte{0, 0, 0, 32}) })
			})
		}, func(n int) []time.Duration {
			return timed(n, decapsulate)
		}
}

// floorSession is an HMAC session salted to the SRK and kept across
// commands, as the token keeps one (tpm/kept_session.go), computed here
// from Part 1 alone: the floor's own code.
type floorSession struct {
	handle   uint32
	key      []byte // sessionKey (the objects' authValues are empty)
	nonceTPM []byte
}

func startFloorSession(b *testing.B, tr transport.TPM, srk tpm2.NamedHandle) *floorSession {
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
	rand.Read(nonce)
	rsp, err := tpm2.StartAuthSession{TPMKey: srk.Handle, Bind: tpm2.TPMRHNull, NonceCaller: tpm2.TPM2BNonce{Buffer: nonce},
		EncryptedSalt: tpm2.TPM2BEncryptedSecret{Buffer: enc}, SessionType: tpm2.TPMSEHMAC, AuthHash: tpm2.TPMAlgSHA256,
		Symmetric: tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgAES, KeyBits: tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode: tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB)}}.Execute(tr)
	if err != nil {
		b.Fatal(err)
	}
	h := uint32(rsp.SessionHandle.HandleValue())
	b.Cleanup(func() { _, _ = tpm2.FlushContext{FlushHandle: tpm2.TPMHandle(h)}.Execute(tr) })
	return &floorSession{handle: h, key: tpm2.KDFa(crypto.SHA256, salt, "ATH", rsp.NonceTPM.Buffer, nonce, 256), nonceTPM: rsp.NonceTPM.Buffer}
}

// floorCmd is a command marshalled once; only its nonce, HMAC and (for
// a decrypt session) its first parameter change per call.
type floorCmd struct {
	cc      uint32
	names   []byte // the handles' names, for cpHash
	buf     []byte
	nonce   int // offset of the caller's nonce
	hmac    int // offset of the HMAC
	params  int // offset of the parameters
	attrs   byte
	cpFixed []byte // cpHash when no parameter changes (decrypt off)
}

func (s *floorSession) command(cc uint32, hs []tpm2.TPMHandle, names []tpm2.TPM2BName, attrs byte, params []byte) *floorCmd {
	c := &floorCmd{cc: cc, attrs: attrs}
	b := binary.BigEndian.AppendUint16(nil, 0x8002)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, cc)
	for i, h := range hs {
		b = binary.BigEndian.AppendUint32(b, uint32(h))
		c.names = append(c.names, names[i].Buffer...)
	}
	b = binary.BigEndian.AppendUint32(b, 4+2+16+1+2+32)
	b = binary.BigEndian.AppendUint32(b, s.handle)
	b = append(b, 0, 16)
	c.nonce = len(b)
	b = append(b, make([]byte, 16)...)
	b = append(b, attrs, 0, 32)
	c.hmac = len(b)
	b = append(b, make([]byte, 32)...)
	c.params = len(b)
	b = append(b, params...)
	binary.BigEndian.PutUint32(b[2:], uint32(len(b)))
	c.buf = b
	if attrs&0x20 == 0 {
		c.cpFixed = c.cpHash()
	}
	return c
}

func (c *floorCmd) cpHash() []byte {
	d := sha256.New()
	d.Write(binary.BigEndian.AppendUint32(nil, c.cc))
	d.Write(c.names)
	d.Write(c.buf[c.params:])
	return d.Sum(nil)
}

// cfb is the session's parameter encryption (Part 1 §21.3).
func (s *floorSession) cfb(p, newer, older []byte, decrypt bool) {
	kiv := tpm2.KDFa(crypto.SHA256, s.key, "CFB", newer, older, 256)
	blk, _ := aes.NewCipher(kiv[:16])
	if decrypt {
		cipher.NewCFBDecrypter(blk, kiv[16:]).XORKeyStream(p, p)
	} else {
		cipher.NewCFBEncrypter(blk, kiv[16:]).XORKeyStream(p, p)
	}
}

func (s *floorSession) mac(pHash, newer, older []byte, attrs byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(pHash)
	m.Write(newer)
	m.Write(older)
	m.Write([]byte{attrs})
	return m.Sum(nil)
}

// run sends c (fill, if set, writes the first parameter's plaintext, then
// it is encrypted), checks the response's HMAC and returns its
// parameters, the first decrypted if the session encrypts it.
func (s *floorSession) run(b *testing.B, tr transport.TPM, c *floorCmd, fill func(p []byte)) []byte {
	nonce := c.buf[c.nonce : c.nonce+16]
	rand.Read(nonce)
	cp := c.cpFixed
	if fill != nil {
		p := c.buf[c.params:]
		fill(p)
		n := int(binary.BigEndian.Uint16(p))
		s.cfb(p[2:2+n], nonce, s.nonceTPM, false)
		cp = c.cpHash()
	}
	copy(c.buf[c.hmac:], s.mac(cp, nonce, s.nonceTPM, c.attrs))
	rsp := sendOK(b, tr, c.buf)
	n := binary.BigEndian.Uint32(rsp[10:])
	params := rsp[14 : 14+n]
	r := rsp[14+n:]
	nn := int(binary.BigEndian.Uint16(r))
	s.nonceTPM = bytes.Clone(r[2 : 2+nn])
	attrs := r[2+nn]
	r = r[2+nn+1+2:]
	d := sha256.New()
	d.Write([]byte{0, 0, 0, 0})
	d.Write(binary.BigEndian.AppendUint32(nil, c.cc))
	d.Write(params)
	if !hmac.Equal(s.mac(d.Sum(nil), s.nonceTPM, nonce, attrs), r) {
		b.Fatal("floor: bad response HMAC")
	}
	if c.attrs&0x40 != 0 {
		m := int(binary.BigEndian.Uint16(params))
		s.cfb(params[2:2+m], s.nonceTPM, nonce, true)
	}
	return params
}

// pqcToken sets up the token side of kind and returns it, n calls at a
// time, and its TPM commands per call so far.
func pqcToken(b *testing.B, kind string, msg []byte) (func(n int) []time.Duration, func() float64) {
	f := swtpmtest.StartFwTPM(b)
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: f.Spec, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	h := provision(b, l)
	var calls int
	var cmds uint64
	// call returns what to do after it, untimed (destroy the new key).
	timed := func(n int, call func() func()) []time.Duration {
		out := make([]time.Duration, n)
		before := l.TPMCommands()
		for i := range out {
			t0 := time.Now()
			after := call()
			out[i] = time.Since(t0)
			after()
		}
		cmds += l.TPMCommands() - before
		calls += n
		return out
	}
	perCall := func() float64 { return float64(cmds) / float64(calls) }
	if kind == "ML-DSA-65-sign" {
		_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_65)}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return func(n int) []time.Duration {
			return timed(n, func() func() {
				if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, priv); err != nil {
					b.Fatal(err)
				}
				if _, err := l.Sign(h, msg, tpmtoken.Dest{Cap: 4000}); err != nil {
					b.Fatal(err)
				}
				return func() {}
			})
		}, perCall
	}
	pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM_KEY_PAIR_GEN},
		[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_KEM_768)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	got, err := l.GetAttributeValue(h, pub, []ck.AttributeType{ck.CKA_VALUE})
	if err != nil {
		b.Fatal(err)
	}
	ek, err := mlkem.NewEncapsulationKey768(got[0].Value)
	if err != nil {
		b.Fatal(err)
	}
	_, ct := ek.Encapsulate()
	// A sensitive session key (the default): it goes into the TPM.
	tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)}}
	return func(n int) []time.Duration {
		return timed(n, func() func() {
			k, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, priv, tmpl, ct)
			if err != nil {
				b.Fatal(err)
			}
			return func() {
				if err := l.DestroyObject(h, k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}, perCall
}
