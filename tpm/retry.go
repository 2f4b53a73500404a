package tpm

import (
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// retrying resends a command the TPM answered with RETRY, YIELDED or
// TESTING: those say "not now", not "no", and a fresh swtpm answers RETRY
// to its first Sign.
type retrying struct{ t transport.TPM }

// Retrying wraps t so transient response codes never reach callers.
func Retrying(t transport.TPM) transport.TPM { return retrying{t} }

func (r retrying) Send(cmd []byte) ([]byte, error) {
	delay := 100 * time.Microsecond
	for attempt := 0; ; attempt++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || attempt == 50 {
			return rsp, err
		}
		switch responseCode(rsp) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(delay)
			if delay < 20*time.Millisecond {
				delay *= 2
			}
			continue
		}
		return rsp, nil
	}
}
