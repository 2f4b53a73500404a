package tpmtoken_test

import (
	"crypto/mlkem"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken"
)

// BenchmarkPQCVsFloor: ML-DSA-65 signatures and ML-KEM-768
// decapsulations through the token (C_Sign, C_DecapsulateKey) beside the
// TPM's own rate for the same commands, pre-marshalled and sent on a
// connection of their own (the floor), each on a fresh fwtpm_server.
func BenchmarkPQCVsFloor(b *testing.B) {
	msg := make([]byte, 32)
	for _, kind := range []string{"ML-DSA-65-sign", "ML-KEM-768-decapsulate"} {
		b.Run(kind, func(b *testing.B) {
			n := max(b.N, 20)
			floor := pqcFloor(b, kind, msg, n)
			lib, cmds := pqcToken(b, kind, msg, n)
			b.ReportMetric(cmds, "tpm11-cmds/op")
			b.ReportMetric(float64(time.Second)/float64(median(floor)), "floor-ops/s")
			b.ReportMetric(float64(time.Second)/float64(median(lib)), "tpm11-ops/s")
			b.ReportMetric(float64(median(floor))/float64(median(lib)), "ratio")
		})
	}
}

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

func pqcFloor(b *testing.B, kind string, msg []byte, n int) []time.Duration {
	f := swtpmtest.StartFwTPM(b)
	tr := f.Transport(b)
	e := tpm.NewEngine(tr, 8)
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
	var ct []byte
	if kind != "ML-DSA-65-sign" {
		p, _ := tpm.PublicOf(pub)
		ek, err := mlkem.NewEncapsulationKey768(p.Unique)
		if err != nil {
			b.Fatal(err)
		}
		_, ct = ek.Encapsulate()
	}
	start := rawPQCCmd(0x1AA, []uint32{h}, 0, append(tpm2b(nil), tpm2b(nil)...))
	decap := rawPQCCmd(0x1A8, []uint32{h}, 1, tpm2b(ct))
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		if ct != nil {
			sendOK(b, tr, decap)
		} else {
			rsp := sendOK(b, tr, start)
			seq := binary.BigEndian.Uint32(rsp[10:])
			sendOK(b, tr, rawPQCCmd(0x1A4, []uint32{seq, h}, 2, tpm2b(msg)))
		}
		out[i] = time.Since(t0)
	}
	e.FlushAll()
	return out
}

func pqcToken(b *testing.B, kind string, msg []byte, n int) ([]time.Duration, float64) {
	f := swtpmtest.StartFwTPM(b)
	l, err := tpmtoken.Open(tpmtoken.Config{TPM: f.Spec, Store: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	h := provision(b, l)
	out := make([]time.Duration, n)
	if kind == "ML-DSA-65-sign" {
		_, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA_KEY_PAIR_GEN},
			[]tpmtoken.Attr{{ck.CKA_PARAMETER_SET, ulong(ck.CKP_ML_DSA_65)}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		before := l.TPMCommands()
		for i := range out {
			t0 := time.Now()
			if err := l.SignInit(h, tpmtoken.Mechanism{Type: ck.CKM_ML_DSA}, priv); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Sign(h, msg, tpmtoken.Dest{Cap: 4000}); err != nil {
				b.Fatal(err)
			}
			out[i] = time.Since(t0)
		}
		return out, float64(l.TPMCommands()-before) / float64(n)
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
	// A readable session key: the figure is the decapsulation, not the
	// new key's import into the TPM (a sensitive one goes there).
	tmpl := []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_SECRET_KEY)}, {ck.CKA_KEY_TYPE, ulong(ck.CKK_GENERIC_SECRET)},
		{ck.CKA_SENSITIVE, []byte{0}}, {ck.CKA_EXTRACTABLE, []byte{1}}}
	before := l.TPMCommands()
	for i := range out {
		t0 := time.Now()
		k, err := l.DecapsulateKey(h, tpmtoken.Mechanism{Type: ck.CKM_ML_KEM}, priv, tmpl, ct)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = time.Since(t0)
		if err := l.DestroyObject(h, k); err != nil {
			b.Fatal(err)
		}
	}
	return out, float64(l.TPMCommands()-before) / float64(n)
}
