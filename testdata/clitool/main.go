// Command clitool helps the shell tests of the tpm11 command:
//
//	clitool pty [-e EXPECT -s SEND]... -- COMMAND [ARG...]
//	    runs COMMAND on a new pseudo-terminal (stdin, stdout and stderr),
//	    waits for each EXPECT text in its output and then types SEND and a
//	    newline, and prints the whole terminal transcript; exits as COMMAND.
//	clitool json PATH < FILE
//	    prints the value at PATH (dot-separated keys and array indexes,
//	    "." for the whole document; "#" is an array's length), failing if
//	    the input is not JSON.
//
// It is Go and the standard library only, so the tests need no expect or
// jq on the machine.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: clitool pty|json ...")
	}
	switch os.Args[1] {
	case "pty":
		os.Exit(runPTY(os.Args[2:]))
	case "json":
		if len(os.Args) != 3 {
			fail("usage: clitool json PATH < FILE")
		}
		jsonGet(os.Args[2])
	default:
		fail("unknown subcommand " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "clitool:", msg)
	os.Exit(2)
}

func ioctl(fd uintptr, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if err := ioctl(master.Fd(), syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		return nil, nil, err
	}
	var n uint32
	if err := ioctl(master.Fd(), syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		return nil, nil, err
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	return master, slave, err
}

func runPTY(args []string) int {
	type step struct{ expect, send string }
	var steps []step
	for len(args) > 0 && args[0] != "--" {
		if len(args) < 4 || args[0] != "-e" || args[2] != "-s" {
			fail("pty: expected -e EXPECT -s SEND pairs, then -- COMMAND")
		}
		steps = append(steps, step{args[1], args[3]})
		args = args[4:]
	}
	if len(args) < 2 {
		fail("pty: no command")
	}
	master, slave, err := openPTY()
	if err != nil {
		fail("pty: " + err.Error())
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		fail("pty: " + err.Error())
	}
	slave.Close()

	var out bytes.Buffer
	chunks := make(chan []byte)
	go func() {
		for {
			b := make([]byte, 4096)
			n, err := master.Read(b)
			if n > 0 {
				chunks <- b[:n]
			}
			if err != nil { // EIO once the command and its children are gone
				close(chunks)
				return
			}
		}
	}()
	seen := 0 // output already matched by earlier steps
	deadline := time.After(60 * time.Second)
	for _, s := range steps {
		for {
			if i := strings.Index(out.String()[seen:], s.expect); i >= 0 {
				seen += i + len(s.expect)
				break
			}
			select {
			case b, ok := <-chunks:
				if !ok {
					os.Stdout.Write(out.Bytes())
					fmt.Fprintf(os.Stderr, "clitool pty: the command ended before %q\n", s.expect)
					_ = cmd.Wait()
					return 99
				}
				out.Write(b)
			case <-deadline:
				os.Stdout.Write(out.Bytes())
				fmt.Fprintf(os.Stderr, "clitool pty: timed out waiting for %q\n", s.expect)
				_ = cmd.Process.Kill()
				return 99
			}
		}
		// Let the program turn echo off and block in read before typing,
		// as a person would.
		time.Sleep(100 * time.Millisecond)
		if _, err := master.Write([]byte(s.send + "\n")); err != nil {
			fail("pty: " + err.Error())
		}
	}
	for b := range chunks {
		out.Write(b)
	}
	os.Stdout.Write(out.Bytes())
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fail("pty: " + err.Error())
	}
	return 0
}

func jsonGet(path string) {
	b, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		fail("not JSON: " + err.Error())
	}
	if path != "." {
		for _, k := range strings.Split(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				var ok bool
				if v, ok = x[k]; !ok {
					fail("no key " + k)
				}
			case []any:
				if k == "#" {
					v = float64(len(x))
					continue
				}
				i, err := strconv.Atoi(k)
				if err != nil || i < 0 || i >= len(x) {
					fail("no index " + k)
				}
				v = x[i]
			default:
				fail("cannot index " + k)
			}
		}
	}
	switch x := v.(type) {
	case string:
		fmt.Println(x)
	default:
		out, _ := json.Marshal(x)
		fmt.Println(string(out))
	}
}
