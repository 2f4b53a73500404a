package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tpm11/tpm11/tpmtoken"
)

// durationSettings are the settings that hold a duration; the library
// ignores a value it cannot read (the module must start anyway), so the
// command says so: info lists it, every other command refuses to run.
var durationSettings = []struct{ env, file string }{
	{"TPM11_TIMEOUT", "timeout"}, {"TPM11_KEYGEN_TIMEOUT", "keygen_timeout"}, {"TPM11_ASYNC_GRACE", ""},
}

// durationProblems describes each duration setting that is set but not a
// positive duration.
func (g *globals) durationProblems() []string {
	file := map[string]string{}
	if f, err := os.Open(tpmtoken.ConfigFile(g.env)); err == nil {
		sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(strings.TrimSpace(k), "#") {
				file[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	var out []string
	for _, s := range durationSettings {
		from, v := s.env, g.env(s.env)
		if v == "" && s.file != "" {
			from, v = "the config file's "+s.file, file[s.file]
		}
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || (d <= 0 && s.env != "TPM11_ASYNC_GRACE") || d < 0 {
			out = append(out, fmt.Sprintf("%s=%q is not a positive duration (e.g. 30s, 2m)", from, v))
		}
	}
	return out
}
