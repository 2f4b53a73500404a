package tpmtoken

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tpm11/tpm11/internal/atomicfile"
	"github.com/tpm11/tpm11/tpm"
)

// Config is read in C_Initialize, never at load. Precedence: environment
// (TPM11_TPM, TPM11_STORE, TPM11_LOG, TPM11_TIMEOUT, TPM11_KEYGEN_TIMEOUT)
// over the config file (TPM11_CONFIG, or $XDG_CONFIG_HOME/tpm11/config, or
// /etc/tpm11/config; "key = value" lines with keys tpm, store, log,
// timeout, keygen_timeout) over defaults.
type Config struct {
	TPM   string // backend spec, see tpm.Open
	Store string // token store directory
	Log   string // "" (quiet), error, warn, info, debug
	// AsyncGrace is how long an operation on an async session may run
	// before it returns CKR_PENDING (TPM11_ASYNC_GRACE, a Go duration).
	AsyncGrace time.Duration
	// Deadlines bound each TPM command (TPM11_TIMEOUT / timeout for any
	// command, TPM11_KEYGEN_TIMEOUT / keygen_timeout for key generation;
	// Go durations, e.g. 5s; zero: tpm.DefaultDeadlines).
	Deadlines tpm.Deadlines
}

// maxConfig bounds the config file's size.
const maxConfig = 64 << 10

// LoadConfig resolves the configuration from env (os.Getenv in production).
func LoadConfig(env func(string) string) Config {
	file := map[string]string{}
	path := env("TPM11_CONFIG")
	if path == "" {
		base := env("XDG_CONFIG_HOME")
		if base == "" && env("HOME") != "" {
			base = filepath.Join(env("HOME"), ".config")
		}
		path = filepath.Join(base, "tpm11", "config")
		if _, err := os.Stat(path); err != nil {
			path = "/etc/tpm11/config"
		}
	}
	// A config file is small; anything else (a FIFO, a device, a huge
	// file) is ignored rather than read.
	if b, err := atomicfile.Read(path, maxConfig); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' {
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				file[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	pick := func(envKey, fileKey, def string) string {
		if v := env(envKey); v != "" {
			return v
		}
		if v := file[fileKey]; v != "" {
			return v
		}
		return def
	}
	c := Config{
		TPM:   pick("TPM11_TPM", "tpm", tpm.DefaultSpec()),
		Store: pick("TPM11_STORE", "store", defaultStore(env)),
		Log:   pick("TPM11_LOG", "log", ""),
	}
	if d, err := time.ParseDuration(env("TPM11_ASYNC_GRACE")); err == nil {
		c.AsyncGrace = d
	}
	if d, err := time.ParseDuration(pick("TPM11_TIMEOUT", "timeout", "")); err == nil && d > 0 {
		c.Deadlines.Command = d
	}
	if d, err := time.ParseDuration(pick("TPM11_KEYGEN_TIMEOUT", "keygen_timeout", "")); err == nil && d > 0 {
		c.Deadlines.KeyGen = d
	}
	return c
}

// defaultStore is $XDG_DATA_HOME/tpm11, else ~/.local/share/tpm11.
func defaultStore(env func(string) string) string {
	if d := env("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "tpm11")
	}
	home := env("HOME")
	if home == "" {
		home = "/var/lib"
	}
	return filepath.Join(home, ".local", "share", "tpm11")
}

// Logger returns a structured logger at the configured level; quiet by default.
func (c Config) Logger() *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(c.Log) {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
