package swtpmtest

import (
	"sync"
	"testing"

	"github.com/tpm11/tpm11/tpm"
)

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
