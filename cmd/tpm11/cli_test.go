package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestURIRoundTrip(t *testing.T) {
	u := &p11uri{token: "my token;1", serial: "ab", id: []byte{0, 0xff}, hasID: true, object: "web/server", typ: "private"}
	s := u.String()
	if s != "pkcs11:token=my%20token%3B1;serial=ab;id=%00%FF;object=web%2Fserver;type=private" {
		t.Fatalf("String() = %s", s)
	}
	v, err := parseURI(s)
	if err != nil || v.token != u.token || v.serial != u.serial || !bytes.Equal(v.id, u.id) || v.object != u.object || v.typ != u.typ {
		t.Fatalf("parseURI(%s) = %+v, %v", s, v, err)
	}
	for _, bad := range []string{"pkcs11:colour=blue", "pkcs11:type=key", "pkcs11:id=%zz", "pkcs11:token", "file:x", "pkcs11:slot-id=x"} {
		if _, err := parseURI(bad); err == nil {
			t.Errorf("parseURI(%q) accepted", bad)
		}
	}
	if v, err := parseURI("pkcs11:id=%01?pin-value=1234"); err != nil || v.pinValue != "1234" {
		t.Errorf("pin-value: %+v %v", v, err)
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]string{"01": "\x01", "0x0a": "\x0a", "a1:b2": "\xa1\xb2", "1": "\x01"} {
		if id, err := parseID(in); err != nil || string(id) != want {
			t.Errorf("parseID(%q) = %x, %v", in, id, err)
		}
	}
	for _, bad := range []string{"zz", "", strings.Repeat("00", 65)} {
		if _, err := parseID(bad); err == nil {
			t.Errorf("parseID(%q) accepted", bad)
		}
	}
}

func TestLegacyFlags(t *testing.T) {
	got := legacyFlags(newRoot(), []string{"keygen", "-type", "ec:p256", "-id=01", "-label", "-x", "-o", "f", "--", "-id"})
	want := "keygen --type ec:p256 --id=01 --label -x -o f -- -id"
	if strings.Join(got, " ") != want {
		t.Fatalf("legacyFlags = %v", got)
	}
}

func TestParseSubject(t *testing.T) {
	for _, s := range []string{"/CN=host/O=Org/OU=a", "CN=host, O=Org, OU=a"} {
		n, err := parseSubject(s)
		if err != nil || n.CommonName != "host" || n.Organization[0] != "Org" || n.OrganizationalUnit[0] != "a" {
			t.Errorf("parseSubject(%q) = %+v, %v", s, n, err)
		}
	}
	if n, _ := parseSubject(`CN=a\, b`); n.CommonName != "a, b" {
		t.Errorf("escaped comma: %q", n.CommonName)
	}
	if n, _ := parseSubject("plain name"); n.CommonName != "plain name" {
		t.Errorf("bare name: %q", n.CommonName)
	}
	if _, err := parseSubject("/XX=1"); err == nil {
		t.Error("unknown attribute accepted")
	}
}

func TestParseKeyType(t *testing.T) {
	for in, want := range map[string]string{"ec": "ec:p256", "EC:P-384": "ec:p384", "ec:prime256v1": "ec:p256", "ec:secp224r1": "ec:p224", "ec:nistp521": "ec:p521",
		"rsa": "rsa:2048", "rsa:3072": "rsa:3072", "aes": "aes:256", "hmac:512": "hmac:512"} {
		if k, err := parseKeyType(in); err != nil || k.name != want {
			t.Errorf("parseKeyType(%q) = %q, %v", in, k.name, err)
		}
	}
	for _, bad := range []string{"dsa", "ec:p999", "rsa:x", "hmac:12", "hmac:2048"} {
		if _, err := parseKeyType(bad); err == nil {
			t.Errorf("parseKeyType(%q) accepted", bad)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for args, want := range map[string]int{"--help": 0, "--version": 0, "frobnicate": exitUsage, "list --frobnicate": exitUsage,
		"": exitUsage, "keygen --type dsa": exitUsage, "init": exitUsage} {
		var out, errb bytes.Buffer
		if got := run(strings.Fields(args), &out, &errb); got != want {
			t.Errorf("tpm11 %s: exit %d, want %d (%s)", args, got, want, errb.String())
		}
		if want != 0 && strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("tpm11 %s: stderr is not one line: %q", args, errb.String())
		}
	}
}
