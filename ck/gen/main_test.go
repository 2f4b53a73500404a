package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestUpToDate fails when ck/rv.go is not what the header generates: someone
// edited it by hand, or changed the header without `go generate ./ck`.
func TestUpToDate(t *testing.T) {
	f, err := os.Open("pkcs11t.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := generate(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../rv.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ck/rv.go is not what pkcs11t.h generates: run `go generate ./ck`")
	}
}

// TestRejectsWhatItCannotRead: an alias or a duplicate value stops the
// generator rather than leaving a return value unnamed or misnamed.
func TestRejectsWhatItCannotRead(t *testing.T) {
	for _, h := range []string{
		"#define CKR_A 0x00000001UL\n#define CKR_B CKR_A\n",
		"#define CKR_A 0x00000001UL\n#define CKR_B 0x00000001UL\n",
		"#define CKA_A 0x00000001UL\n",
	} {
		if _, err := generate(strings.NewReader(h)); err == nil {
			t.Errorf("generate(%q) succeeded", h)
		}
	}
}
