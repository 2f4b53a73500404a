package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/version"
)

// configReport is what info says about the configuration.
type configReport struct {
	File     string   `json:"config_file"`
	Read     bool     `json:"config_file_read"`
	TPM      string   `json:"tpm"`
	Store    string   `json:"store"`
	Log      string   `json:"log"`
	Warnings []string `json:"warnings"`
}

// checkConfig finds the config file LoadConfig reads and what in it, or in
// TPM11_LOG, tpm11 does not understand: mistakes that would otherwise be
// silently ignored.
func (g *globals) checkConfig() configReport {
	g.cfg = tpmtoken.LoadConfig(g.env)
	r := configReport{File: tpmtoken.ConfigFile(g.env), TPM: g.cfg.TPM, Store: g.cfg.Store, Log: g.cfg.Log, Warnings: []string{}}
	if f, err := os.Open(r.File); err == nil {
		r.Read = true
		sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' {
				continue
			}
			k, _, ok := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			switch {
			case !ok:
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s line %d: not \"key = value\": ignored", r.File, n))
			case !slices.Contains(tpmtoken.ConfigKeys, k):
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s line %d: unknown key %q ignored (keys: %s)", r.File, n, k, strings.Join(tpmtoken.ConfigKeys, ", ")))
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("config file %s: %v", r.File, err))
	}
	for _, p := range g.durationProblems() {
		r.Warnings = append(r.Warnings, p+": the default is used, and other tpm11 commands refuse to run")
	}
	if r.Log != "" && !slices.Contains(tpmtoken.LogLevels, strings.ToLower(r.Log)) {
		from := "the config file's log"
		if os.Getenv("TPM11_LOG") != "" {
			from = "TPM11_LOG"
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s=%q is not a level (%s): logging is off", from, r.Log, strings.Join(tpmtoken.LogLevels, ", ")))
	}
	return r
}

type infoJSON struct {
	Version string `json:"version"`
	configReport
	Simulated bool        `json:"simulated"`
	TPMError  string      `json:"tpm_error,omitempty"`
	TPMInfo   *tpmInfo    `json:"tpm_info,omitempty"`
	KeyTypes  []string    `json:"key_types,omitempty"`
	Lockout   *lockout    `json:"lockout,omitempty"`
	Tokens    []tokenJSON `json:"tokens"`
}

type tpmInfo struct {
	Manufacturer string `json:"manufacturer"`
	Vendor       string `json:"vendor"`
	Firmware     string `json:"firmware"`
}

type lockout struct {
	Counter   uint32 `json:"counter"`
	MaxTries  uint32 `json:"max_tries"`
	InLockout bool   `json:"in_lockout"`
}

func infoCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "info",
		Short: "Show the configuration, the TPM, its key types, lockout state and tokens",
		RunE: func(cmd *cobra.Command, args []string) error {
			r := infoJSON{Version: version.Version, configReport: g.checkConfig(), Tokens: []tokenJSON{}}
			l, err := g.openLib()
			if err != nil {
				return err
			}
			defer l.Close()
			d, derr := l.Diagnose()
			if derr != nil {
				r.TPMError = derr.Error()
				var ce *ck.Error
				if errors.As(derr, &ce) && ce.Cause != nil {
					r.TPMError = ce.Cause.Error()
				}
			} else {
				r.Simulated = d.Simulated
				r.TPMInfo = &tpmInfo{d.TPM.Manufacturer, d.TPM.VendorString, fmt.Sprintf("%d.%d", d.TPM.FirmwareMajor, d.TPM.FirmwareMinor)}
				r.KeyTypes = offered(d)
				r.Lockout = &lockout{d.DA.Counter, d.DA.MaxTries, d.DA.InLockout}
				ts, err := tokens(l)
				if err != nil {
					return err
				}
				for _, t := range ts {
					r.Tokens = append(r.Tokens, t.json())
				}
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), r); err != nil || derr == nil {
					return err
				}
				return errors.New("the TPM is not reachable (tpm_error says why): exit status 1, for scripts")
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "tpm11 %s\n", r.Version)
			if r.Read {
				fmt.Fprintf(w, "config: %s\n", r.File)
			} else {
				fmt.Fprintf(w, "config: none (%s not found): environment and defaults\n", r.File)
			}
			fmt.Fprintf(w, "tpm:    %s\nstore:  %s\n", r.TPM, r.Store)
			if r.Log == "" {
				fmt.Fprintln(w, "log:    off")
			} else {
				fmt.Fprintf(w, "log:    %s\n", r.Log)
			}
			for _, warn := range r.Warnings {
				fmt.Fprintln(w, "warning:", warn)
			}
			if derr != nil {
				fmt.Fprintln(w, "TPM:    not reachable:", r.TPMError)
				return errors.New("the TPM is not reachable (the report above says why): exit status 1, for scripts")
			}
			if d.Simulated {
				fmt.Fprintln(w, "WARNING: software TPM simulator: keys have no hardware protection")
			}
			fmt.Fprintf(w, "TPM:    %q %q firmware %s\n", d.TPM.Manufacturer, d.TPM.VendorString, r.TPMInfo.Firmware)
			curves := []string{}
			for _, c := range d.Curves {
				curves = append(curves, fmt.Sprintf("P-%d", c.Bits))
			}
			fmt.Fprintf(w, "keys:   RSA %v bits, EC %v, AES %v bits\n", d.Caps.RSABits, curves, d.Caps.AESBits)
			fmt.Fprintf(w, "keygen: %s\n", strings.Join(r.KeyTypes, " "))
			fmt.Fprintf(w, "lockout: %d of %d failed authorizations counted, locked out: %v (TPM-wide)\n", d.DA.Counter, d.DA.MaxTries, d.DA.InLockout)
			for _, id := range l.SlotList(false) {
				si, _ := l.SlotInfo(id)
				fmt.Fprintf(w, "slot %d: %s\n", id, si.Description)
				ti, err := l.TokenInfo(id)
				if err != nil || ti.Flags&ck.CKF_TOKEN_INITIALIZED == 0 {
					fmt.Fprintln(w, "  no token (tpm11 init makes one)")
					continue
				}
				t := token{id, ti}
				fmt.Fprintf(w, "  token %q serial %s, user PIN set: %v  %s\n", ti.Label, ti.Serial, ti.Flags&ck.CKF_USER_PIN_INITIALIZED != 0, t.URI())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// cmdSelftest makes a session key in the TPM, signs, and verifies: the
// whole path from store to TPM and back.
func selftestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "selftest",
		Short: "Sign with a temporary TPM key and verify",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withToken(cmd, nil, true, func(c *ctx) error {
				var pub, priv uint64
				err := progress("generating a temporary P-256 key in the TPM", func() (err error) {
					pub, priv, err = c.l.GenerateKeyPair(c.h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
						[]tpmtoken.Attr{attr(ck.CKA_EC_PARAMS, tpmtoken.CurveNamed("p256").Params)}, nil)
					return err
				})
				if err != nil {
					return fmt.Errorf("keygen: %w", err)
				}
				m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}
				if err := c.l.SignInit(c.h, m, priv); err != nil {
					return err
				}
				sig, err := c.l.Sign(c.h, []byte("tpm11 selftest"), tpmtoken.Dest{Cap: 64})
				if err != nil {
					return fmt.Errorf("sign: %w", err)
				}
				if err := c.l.VerifyInit(c.h, m, pub); err != nil {
					return err
				}
				if err := c.l.Verify(c.h, []byte("tpm11 selftest"), sig); err != nil {
					return fmt.Errorf("verify: %w", err)
				}
				fmt.Fprintf(c.out, "ok: P-256 key made in the TPM, signature verified; %d TPM commands\n", c.l.TPMCommands())
				return nil
			})
		},
	}
}
