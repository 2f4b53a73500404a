package tpm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The v1.85 structures and commands, byte for byte. The expected bytes are
// written here from the layouts of the TPM 2.0 Library Specification v1.85
// (Part 2 structures, Part 3 command and response tables), field by field;
// the end-to-end tests (pqc_fwtpm_test.go) show a TPM accepts them.

// hx decodes hex with spaces and | between fields (for reading).
func hx(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPQCPublicLayout(t *testing.T) {
	restricted := MLKEMKeyTemplate(MLKEM_1024)
	restricted.Attributes.Restricted = true
	restricted.Symmetric = tpm2.TPMTSymDefObject{
		Algorithm: tpm2.TPMAlgAES,
		KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
		Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
	}
	withKey := MLDSAKeyTemplate(MLDSA_44)
	withKey.Unique = []byte{0xa1, 0xa2, 0xa3}
	withKey.AllowExternalMu = true
	withKey.AuthPolicy = []byte{0xee}
	for _, c := range []struct {
		name string
		pub  *PQCPublic
		want string
	}{
		// TPMT_PUBLIC: type | nameAlg | objectAttributes | authPolicy |
		// parameters | unique. keyAttrs: fixedTPM(1) fixedParent(4)
		// sensitiveDataOrigin(5) userWithAuth(6) noDA(10), + sign(18)
		// or decrypt(17).
		// TPMS_MLDSA_PARMS: parameterSet TPMI_MLDSA_PARAMETER_SET, allowExternalMu TPMI_YES_NO.
		{"ML-DSA-65", MLDSAKeyTemplate(MLDSA_65), "00A1 | 000B | 00040472 | 0000 | 0002 00 | 0000"},
		{"ML-DSA-44 with key", withKey, "00A1 | 000B | 00040472 | 0001 EE | 0001 01 | 0003 A1A2A3"},
		// TPMS_HASH_MLDSA_PARMS: parameterSet, hashAlg.
		{"HashML-DSA-87/SHA-384", HashMLDSAKeyTemplate(MLDSA_87, tpm2.TPMAlgSHA384), "00A2 | 000B | 00040472 | 0000 | 0003 000C | 0000"},
		// TPMS_MLKEM_PARMS: symmetric TPMT_SYM_DEF_OBJECT+ (NULL alone), parameterSet.
		{"ML-KEM-768", MLKEMKeyTemplate(MLKEM_768), "00A0 | 000B | 00020472 | 0000 | 0010 0002 | 0000"},
		{"ML-KEM-1024 restricted", restricted, "00A0 | 000B | 00030472 | 0000 | 0006 0080 0043 0003 | 0000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := hx(t, c.want)
			got := c.pub.Marshal()
			if !bytes.Equal(got, want) {
				t.Fatalf("TPMT_PUBLIC\n got %X\nwant %X", got, want)
			}
			back, err := ParsePQCPublic(got)
			if err != nil {
				t.Fatal(err)
			}
			if again := back.Marshal(); !bytes.Equal(again, want) {
				t.Fatalf("parsed and marshalled again: %X", again)
			}
			if _, err := ParsePQCPublic(append(got, 0)); err == nil {
				t.Error("a trailing byte parsed")
			}
			if _, err := ParsePQCPublic(got[:len(got)-1]); err == nil {
				t.Error("a truncated public area parsed")
			}
		})
	}
	if _, err := ParsePQCPublic(tpm2.Marshal(ECCKeyTemplate(tpm2.TPMECCNistP256))); err == nil {
		t.Error("an ECC public area parsed as a PQC one")
	}
}

func TestPQCSignatureLayout(t *testing.T) {
	// TPMT_SIGNATURE: sigAlg, then TPMU_SIGNATURE's arm: mldsa is a
	// TPM2B_SIGNATURE_MLDSA; hash_mldsa a TPMS_SIGNATURE_HASH_MLDSA (hash, signature).
	pure := &PQCSignature{Alg: AlgMLDSA, Sig: []byte{1, 2, 3}}
	if got, want := pure.Marshal(), hx(t, "00A1 | 0003 010203"); !bytes.Equal(got, want) {
		t.Errorf("ML-DSA signature %X, want %X", got, want)
	}
	pre := &PQCSignature{Alg: AlgHashMLDSA, Hash: tpm2.TPMAlgSHA512, Sig: []byte{9}}
	if got, want := pre.Marshal(), hx(t, "00A2 | 000D | 0001 09"); !bytes.Equal(got, want) {
		t.Errorf("HashML-DSA signature %X, want %X", got, want)
	}
}

// scripted is a TPM that answers one prepared response and keeps the command.
type scripted struct {
	got, rsp []byte
}

func (s *scripted) Send(b []byte) ([]byte, error) {
	s.got = append([]byte(nil), b...)
	return s.rsp, nil
}

func pw(hd uint32, auth []byte) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(hd), Auth: tpm2.PasswordAuth(auth)}
}

func named(hd uint32) tpm2.NamedHandle { return tpm2.NamedHandle{Handle: tpm2.TPMHandle(hd)} }

func TestPQCCommandLayout(t *testing.T) {
	seqAuth := []byte{0xaa, 0xbb}
	const (
		// A password session (TPMS_AUTH_COMMAND): TPM_RS_PW, empty nonce,
		// no attributes, the password; and its response: empty nonce,
		// attributes, empty HMAC.
		pwEmpty = "40000009 0000 00 0000"
		pwSeq   = "40000009 0000 00 0002 AABB"
		pwRsp   = "0000 01 0000"
	)
	for _, c := range []struct {
		name string
		cmd  rawCmd
		want string // the command
		rsp  string // the TPM's response
		// parse reads the response parameters, returning what to compare
		// with wantOut (hex).
		parse   func(t *testing.T, r *rawResponse) []byte
		wantOut string
	}{
		{
			name: "Encapsulate",
			cmd:  encapsulateCmd(named(0x80000002)),
			// tag | size | TPM_CC_Encapsulate | keyHandle
			want: "8001 | 0000000E | 000001A7 | 80000002",
			// sharedSecret TPM2B_SHARED_SECRET | ciphertext TPM2B_KEM_CIPHERTEXT
			rsp: "8001 | 00000013 | 00000000 | 0002 5152 | 0003 C1C2C3",
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				s, ct := rd.tpm2b(), rd.tpm2b()
				if err := rd.end("x"); err != nil {
					t.Fatal(err)
				}
				return append(s, ct...)
			},
			wantOut: "5152 C1C2C3",
		},
		{
			name: "Decapsulate",
			cmd:  decapsulateCmd(pw(0x80000001, nil), []byte{1, 2, 3}),
			// tag | size | TPM_CC_Decapsulate | @keyHandle | authorization area | ciphertext
			want: "8002 | 00000020 | 000001A8 | 80000001 | 00000009 " + pwEmpty + " | 0003 010203",
			// header | parameterSize | sharedSecret | session
			rsp: "8002 | 00000017 | 00000000 | 00000004 | 0002 5152 | " + pwRsp,
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				return rd.tpm2b()
			},
			wantOut: "5152",
		},
		{
			name: "SignSequenceStart",
			cmd:  signSequenceStartCmd(named(0x80000001), seqAuth, []byte("c")),
			// keyHandle (no authorization) | auth TPM2B_AUTH | context TPM2B_SIGNATURE_CTX
			want: "8001 | 00000015 | 000001AA | 80000001 | 0002 AABB | 0001 63",
			// the response's handle: sequenceHandle
			rsp: "8001 | 0000000E | 00000000 | 80000003",
			parse: func(t *testing.T, r *rawResponse) []byte {
				return hx(t, hexU32(uint32(r.handles[0])))
			},
			wantOut: "80000003",
		},
		{
			name: "VerifySequenceStart",
			cmd:  verifySequenceStartCmd(named(0x80000002), seqAuth, []byte("c")),
			// keyHandle | auth | hint TPM2B_SIGNATURE_HINT | context
			want: "8001 | 00000017 | 000001A9 | 80000002 | 0002 AABB | 0000 | 0001 63",
			rsp:  "8001 | 0000000E | 00000000 | 80000004",
			parse: func(t *testing.T, r *rawResponse) []byte {
				return hx(t, hexU32(uint32(r.handles[0])))
			},
			wantOut: "80000004",
		},
		{
			name: "SequenceUpdate",
			cmd:  sequenceUpdateCmd(pw(0x80000003, seqAuth), []byte("xyz")),
			// @sequenceHandle | authorization | buffer TPM2B_MAX_BUFFER
			want:    "8002 | 00000022 | 0000015C | 80000003 | 0000000B " + pwSeq + " | 0003 78797A",
			rsp:     "8002 | 00000013 | 00000000 | 00000000 | " + pwRsp,
			parse:   func(t *testing.T, r *rawResponse) []byte { return r.params },
			wantOut: "",
		},
		{
			name: "SignSequenceComplete",
			cmd:  signSequenceCompleteCmd(pw(0x80000003, seqAuth), pw(0x80000001, nil), []byte("m")),
			// @sequenceHandle | @keyHandle | two authorizations | buffer
			want: "8002 | 0000002D | 000001A4 | 80000003 80000001 | 00000014 " + pwSeq + " " + pwEmpty + " | 0001 6D",
			// signature TPMT_SIGNATURE (ML-DSA) | two sessions
			rsp: "8002 | 0000001F | 00000000 | 00000007 | 00A1 0003 A1A2A3 | " + pwRsp + " " + pwRsp,
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				s := rd.signature()
				if err := rd.end("x"); err != nil || s.Alg != AlgMLDSA {
					t.Fatalf("%v %+v", err, s)
				}
				return s.Sig
			},
			wantOut: "A1A2A3",
		},
		{
			name: "VerifySequenceComplete",
			cmd:  verifySequenceCompleteCmd(pw(0x80000003, seqAuth), named(0x80000002), &PQCSignature{Alg: AlgMLDSA, Sig: []byte{1, 2}}),
			// @sequenceHandle | keyHandle | authorization | signature
			want: "8002 | 00000027 | 000001A3 | 80000003 80000002 | 0000000B " + pwSeq + " | 00A1 0002 0102",
			// validation TPMT_TK_VERIFIED: tag TPM_ST_MESSAGE_VERIFIED, hierarchy, (no metadata), hmac
			rsp: "8002 | 0000001D | 00000000 | 0000000A | 8026 40000001 0002 F1F2 | " + pwRsp,
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				v := rd.verified()
				if err := rd.end("x"); err != nil || v.Tag != stMessageVerified || v.Hierarchy != tpm2.TPMRHOwner {
					t.Fatalf("%v %+v", err, v)
				}
				return v.HMAC
			},
			wantOut: "F1F2",
		},
		{
			name: "SignDigest",
			cmd:  signDigestCmd(pw(0x80000001, nil), []byte("c"), []byte{0xdd, 0xdd}),
			// @keyHandle | authorization | context | digest TPM2B_DIGEST |
			// validation TPMT_TK_HASHCHECK (TPM_ST_HASHCHECK, TPM_RH_NULL, empty)
			want: "8002 | 0000002A | 000001A6 | 80000001 | 00000009 " + pwEmpty + " | 0001 63 | 0002 DDDD | 8024 40000007 0000",
			// signature TPMT_SIGNATURE (HashML-DSA, SHA-384)
			rsp: "8002 | 0000001B | 00000000 | 00000008 | 00A2 000C 0002 A1A2 | " + pwRsp,
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				s := rd.signature()
				if err := rd.end("x"); err != nil || s.Alg != AlgHashMLDSA || s.Hash != tpm2.TPMAlgSHA384 {
					t.Fatalf("%v %+v", err, s)
				}
				return s.Sig
			},
			wantOut: "A1A2",
		},
		{
			name: "VerifyDigestSignature",
			cmd:  verifyDigestSignatureCmd(named(0x80000002), nil, []byte{0xdd, 0xdd}, &PQCSignature{Alg: AlgHashMLDSA, Hash: tpm2.TPMAlgSHA256, Sig: []byte{1}}),
			// keyHandle | context | digest | signature
			want: "8001 | 0000001B | 000001A5 | 80000002 | 0000 | 0002 DDDD | 00A2 000B 0001 01",
			// TPMT_TK_VERIFIED: TPM_ST_DIGEST_VERIFIED, hierarchy, metadata (the hash), hmac
			rsp: "8001 | 00000016 | 00000000 | 8027 40000001 000B 0002 F1F2",
			parse: func(t *testing.T, r *rawResponse) []byte {
				rd := reader{b: r.params}
				v := rd.verified()
				if err := rd.end("x"); err != nil || v.Tag != stDigestVerified || v.Meta != tpm2.TPMAlgSHA256 {
					t.Fatalf("%v %+v", err, v)
				}
				return v.HMAC
			},
			wantOut: "F1F2",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &scripted{rsp: hx(t, c.rsp)}
			e := NewEngine(s, 3)
			r, err := e.execRaw(c.cmd)
			if want := hx(t, c.want); !bytes.Equal(s.got, want) {
				t.Fatalf("command\n got %X\nwant %X", s.got, want)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.parse(t, r), hx(t, c.wantOut); !bytes.Equal(got, want) {
				t.Errorf("response: %X, want %X", got, want)
			}
			// The same response with a byte more, or cut short, is malformed.
			long := append(hx(t, c.rsp), 0)
			long[5]++
			s.rsp = long
			if _, err := e.execRaw(c.cmd); err == nil && len(c.cmd.auth) > 0 {
				t.Error("a response with a stray byte after its sessions was accepted")
			}
		})
	}
	// A TPM error comes back as the TPMRC, so callers map it.
	s := &scripted{rsp: hx(t, "8001 0000000A 000000AD")}
	if _, err := NewEngine(s, 3).execRaw(signSequenceCompleteCmd(pw(0x80000003, seqAuth), pw(0x80000001, nil), nil)); !errors.Is(err, RCSignContextKey) {
		t.Errorf("error response: %v, want TPM_RC_SIGN_CONTEXT_KEY", err)
	}
}

func hexU32(v uint32) string {
	return hex.EncodeToString([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
