package tpm

import (
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// capture records the commands go-tpm marshals, without a TPM.
type capture struct{ cmds [][]byte }

func (c *capture) Send(cmd []byte) ([]byte, error) {
	c.cmds = append(c.cmds, cmd)
	return nil, &TransportError{Op: "write", Err: errCaptured}
}

var errCaptured = &captured{}

type captured struct{}

func (*captured) Error() string { return "captured" }

// RSA key generation may take a minute on a slow chip; every other
// command, ECC key generation and sealing included, has the short deadline.
func TestDeadlinesBySortOfCommand(t *testing.T) {
	d := Deadlines{Command: time.Second, KeyGen: time.Minute}
	cases := []struct {
		name string
		run  func(transport.TPM)
		want time.Duration
	}{
		{"CreatePrimary RSA", func(tr transport.TPM) {
			_, _ = tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.RSASRKTemplate)}.Execute(tr)
		}, time.Minute},
		{"CreatePrimary ECC", func(tr transport.TPM) {
			_, _ = tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: SRKTemplate()}.Execute(tr)
		}, time.Second},
		{"Create RSA under a password", func(tr transport.TPM) {
			_, _ = tpm2.Create{ParentHandle: tpm2.AuthHandle{Handle: 0x80000000, Name: tpm2.TPM2BName{Buffer: make([]byte, 34)}, Auth: tpm2.PasswordAuth([]byte("x"))},
				InPublic: tpm2.New2B(RSAKeyTemplate(2048))}.Execute(tr)
		}, time.Minute},
		{"Create ECC", func(tr transport.TPM) {
			_, _ = tpm2.Create{ParentHandle: tpm2.AuthHandle{Handle: 0x80000000, Name: tpm2.TPM2BName{Buffer: make([]byte, 34)}, Auth: tpm2.PasswordAuth(nil)},
				InPublic: tpm2.New2B(ECCKeyTemplate(tpm2.TPMECCNistP256))}.Execute(tr)
		}, time.Second},
		{"Create sealed data", func(tr transport.TPM) {
			_, _ = tpm2.Create{ParentHandle: tpm2.AuthHandle{Handle: 0x80000000, Name: tpm2.TPM2BName{Buffer: make([]byte, 34)}, Auth: tpm2.PasswordAuth(nil)},
				InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
					Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: []byte("secret value")})}},
				InPublic: tpm2.New2B(SealTemplate())}.Execute(tr)
		}, time.Second},
		{"Sign", func(tr transport.TPM) {
			_, _ = tpm2.Sign{KeyHandle: tpm2.AuthHandle{Handle: 0x80000000, Name: tpm2.TPM2BName{Buffer: make([]byte, 34)}, Auth: tpm2.PasswordAuth(nil)},
				Digest: tpm2.TPM2BDigest{Buffer: make([]byte, 32)}}.Execute(tr)
		}, time.Second},
	}
	for _, c := range cases {
		tr := &capture{}
		c.run(tr)
		if len(tr.cmds) != 1 {
			t.Fatalf("%s: %d commands", c.name, len(tr.cmds))
		}
		if got := d.For(tr.cmds[0]); got != c.want {
			t.Errorf("%s: deadline %v, want %v", c.name, got, c.want)
		}
	}
}
