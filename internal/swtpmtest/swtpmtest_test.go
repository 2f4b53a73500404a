package swtpmtest

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm11/tpm11/tpm"
)

// Leaks sees transient objects and sessions of both kinds, and nothing
// once they are flushed.
func TestLeaksSeesObjectsAndSessions(t *testing.T) {
	tr := Start(t)
	if err := Leaks(tr, 0); err != nil {
		t.Fatalf("fresh swtpm: %v", err)
	}
	primary, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	hmac, closeHMAC, err := tpm2.HMACSession(tr, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	policy, closePolicy, err := tpm2.PolicySession(tr, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	err = Leaks(tr, 0)
	if err == nil {
		t.Fatal("a loaded object and two sessions not reported")
	}
	for _, want := range []string{"1 transient objects", "2 loaded sessions", "2 active sessions",
		hexHandles([]tpm2.TPMHandle{hmac.Handle()}), hexHandles([]tpm2.TPMHandle{policy.Handle()})} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q: %v", want, err)
		}
	}
	if err := Leaks(tr, 1); err == nil || strings.Contains(err.Error(), "transient") {
		t.Errorf("one transient allowed: %v", err)
	}
	// A context-saved session still holds a session slot.
	if _, err := (tpm2.ContextSave{SaveHandle: policy.Handle()}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	if err := Leaks(tr, 1); err == nil || !strings.Contains(err.Error(), "1 saved sessions") {
		t.Errorf("saved session not reported: %v", err)
	}
	if err := closeHMAC(); err != nil {
		t.Fatal(err)
	}
	if err := closePolicy(); err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.FlushContext{FlushHandle: primary.ObjectHandle}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	CheckNoLeaks(t, tr, 0)
}

// Socket returns a swtpm that takes a connection at once, many started
// side by side; a library can open it straight away.
func TestSocketIsReadyOnReturn(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run("", func(t *testing.T) {
				spec := Socket(t)
				dev, err := tpm.Open(spec, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				defer dev.Close()
				CheckNoLeaks(t, dev.TPM, 0)
			})
		}()
	}
	wg.Wait()
}

// The cleanup check of Socket finds what a closed connection left in the
// TPM (swtpm has no resource manager: a closed connection flushes nothing).
func TestSocketCheckFindsLeftovers(t *testing.T) {
	spec := Socket(t)
	sock := strings.TrimPrefix(spec, "swtpm:unix:")
	dev, err := tpm.Open(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	primary, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}.Execute(dev.TPM)
	if err != nil {
		t.Fatal(err)
	}
	dev.Close()
	err = probe(sock, nil, func(tr transport.TPM) error { return Leaks(tr, 0) })
	if err == nil || !strings.Contains(err.Error(), "1 transient objects") {
		t.Fatalf("left object not found: %v", err)
	}
	// Clean up, or Socket's own check fails this test.
	err = probe(sock, nil, func(tr transport.TPM) error {
		_, err := tpm2.FlushContext{FlushHandle: primary.ObjectHandle}.Execute(tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A test that leaves state in the TPM on purpose can say so.
func TestAllowLeaks(t *testing.T) {
	dev, err := tpm.Open(Socket(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}).Execute(dev.TPM); err != nil {
		t.Fatal(err)
	}
	AllowLeaks(t, "the opt-out is under test")
}
