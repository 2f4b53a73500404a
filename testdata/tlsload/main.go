// Command tlsload is make bench's TLS client for "a server's day": a
// bounded number of full TLS 1.3 handshakes on loopback, a few at once,
// each on a new connection with no session resumption (so each costs the
// server one signature), the server's certificate verified against a CA
// file. It measures each handshake from connect to the handshake's end.
//
//	tlsload -addr 127.0.0.1:PORT -ca cert.pem -name localhost -n 2000 -c 4 -max 120s
//
// It prints "name value" lines: handshakes, errors, seconds,
// handshakes_per_s, p50_ms, p99_ms, cpu_s (its own user+system CPU).
// It stops after n handshakes or max, whichever comes first.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "the server: 127.0.0.1:PORT (loopback only)")
	caFile := flag.String("ca", "", "PEM file of the server's certificate (or its CA)")
	name := flag.String("name", "localhost", "the server name to verify")
	n := flag.Int("n", 1000, "handshakes in all")
	c := flag.Int("c", 4, "handshakes in flight at once")
	max := flag.Duration("max", 2*time.Minute, "stop after this long whatever the count")
	flag.Parse()
	if err := run(*addr, *caFile, *name, *n, *c, *max); err != nil {
		fmt.Fprintln(os.Stderr, "tlsload:", err)
		os.Exit(1)
	}
}

func run(addr, caFile, name string, n, c int, max time.Duration) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS13}
	var (
		next, errs atomic.Int64
		mu         sync.Mutex
		lat        []time.Duration
		wg         sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(max)
	var firstErr atomic.Value
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && time.Now().Before(stop) {
				t0 := time.Now()
				d := net.Dialer{Deadline: t0.Add(30 * time.Second)}
				conn, err := tls.DialWithDialer(&d, "tcp", addr, cfg)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				el := time.Since(t0)
				conn.Close()
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p int) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[(len(lat)-1)*p/100]) / 1e6
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	fmt.Printf("handshakes %d\nerrors %d\nseconds %.3f\nhandshakes_per_s %.1f\np50_ms %.2f\np99_ms %.2f\ncpu_s %.3f\n",
		len(lat), errs.Load(), secs, float64(len(lat))/secs, pct(50), pct(99), cpu)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "tlsload: first error:", e)
	}
	return nil
}
