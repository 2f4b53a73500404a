// Command slowtpm is a slow TPM for the shell and C tests: it relays a
// swtpm socket with a fixed latency added to every command
// (swtpmtest.SlowRelay), so that operations on async sessions pend and slow
// steps show progress without a test hook in the module.
//
//	slowtpm -upstream swtpm:unix:PATH -listen PATH -delay 20ms [-hold DIR]
//
// With -hold it is also a TPM that goes silent on demand (see
// swtpmtest.SlowRelay.HoldDir).
//
// It prints the relay's spec (for TPM11_TPM) once it listens, then relays
// until killed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tpm11/tpm11/internal/swtpmtest"
)

func main() {
	upstream := flag.String("upstream", "", "the swtpm to relay to (swtpm:unix:PATH)")
	listen := flag.String("listen", "", "the unix socket to listen on")
	delay := flag.Duration("delay", 20*time.Millisecond, "latency added to every command")
	hold := flag.String("hold", "", "a directory: while DIR/hold exists, commands are held unanswered (swtpmtest.SlowRelay.HoldDir)")
	flag.Parse()
	r, err := swtpmtest.NewSlowRelay(*upstream, *listen, *delay)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowtpm:", err)
		os.Exit(1)
	}
	r.HoldDir = *hold
	fmt.Println(r.Spec)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	r.Close()
}
