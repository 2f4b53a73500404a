package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// maxTokenLabel is CK_TOKEN_INFO.label's size.
const maxTokenLabel = 32

// countObjects counts a token's objects without logging in.
func countObjects(l *tpmtoken.Library, t token) (int, error) {
	h, err := session(l, t)
	if err != nil {
		return 0, err
	}
	defer l.CloseSession(h)
	pub, err := find(l, h)
	if err != nil {
		return 0, err
	}
	priv, err := l.PrivateObjects(t.Slot)
	return len(pub) + priv, err
}

func initCmd(g *globals) *cobra.Command {
	var label string
	var force, asJSON bool
	c := &cobra.Command{
		Use:   "init --label LABEL",
		Short: "Make a token and set its PINs (--token X --force: re-initialise X)",
		Long: `Make a new token in the TPM and set its SO PIN and user PIN (each asked
twice on a terminal; or TPM11_SO_PIN and TPM11_PIN, --so-pin-file and
--pin-file).

Re-initialising an existing token destroys all its keys: name it with
--token (or --slot) and add --force; its current SO PIN is required and
stays its SO PIN. Everything (label, PIN lengths, the SO PIN itself) is
checked before anything is destroyed.`,
		Example: `  tpm11 init --label mytoken
  tpm11 init --token mytoken --label mytoken --force`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if label == "" {
				return usagef("--label is required")
			}
			if len(label) > maxTokenLabel {
				return usagef("--label is %d bytes; a token label is at most %d", len(label), maxTokenLabel)
			}
			if err := checkLabel(label, maxTokenLabel); err != nil {
				return err
			}
			l, err := g.open()
			if err != nil {
				return err
			}
			defer l.Close()
			all, err := tokens(l)
			if err != nil {
				return err
			}
			reinit := g.selected(nil)
			if reinit && g.slot < 0 && !cmd.Flag("token").Changed {
				// Only TPM11_TOKEN names a token: it chooses the token of
				// other commands; init of another label makes a new one.
				if t, err := g.pick(l, nil); err != nil || t.Label != label {
					reinit = false
				}
			}
			var target token
			var slot uint64
			if g.slot >= 0 {
				if free, err := emptySlot(l); err == nil && free == uint64(g.slot) {
					reinit = false // --slot names the empty slot: a new token
				}
			}
			if reinit {
				if target, err = g.pick(l, nil); err != nil {
					return err
				}
				n, err := countObjects(l, target)
				if err != nil {
					return err
				}
				if !force {
					return fmt.Errorf("token %s exists: re-initialising it destroys its %d %s and its user PIN; add --force (its SO PIN is required)",
						target, n, plural(n, "object", "objects"))
				}
				slot = target.Slot
			} else if slot, err = emptySlot(l); err != nil {
				return err
			}
			for _, t := range all {
				if t.Label == label && (!reinit || t.Serial != target.Serial) {
					return fmt.Errorf("a token labelled %q exists already (serial %s): choose another label, or re-initialise it with --token %s --force",
						label, t.Serial, t.Serial)
				}
			}
			// Every PIN is read and checked before anything changes.
			var so []byte
			if reinit {
				so, err = g.soPIN(target)
			} else {
				so, err = readNewPIN("new SO PIN", "TPM11_SO_PIN", g.soPINFile)
			}
			if err != nil {
				return err
			}
			user, err := readNewPIN("new user PIN", "TPM11_PIN", g.pinFile)
			if err != nil {
				return err
			}
			if reinit {
				h, err := session(l, target)
				if err != nil {
					return err
				}
				err = login(l, h, ck.CKU_SO, so)
				_ = l.CloseSession(h)
				if err != nil {
					return fmt.Errorf("%w: nothing changed", err)
				}
			}
			err = progress("making the token in the TPM", func() error { return l.InitToken(slot, so, []byte(label)) })
			if err != nil {
				return err
			}
			h, err := l.OpenSession(slot, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
			if err != nil {
				return err
			}
			if err := l.Login(h, ck.CKU_SO, so); err != nil {
				return fmt.Errorf("token made, but the SO could not log in to set the user PIN (tpm11 reset-pin): %w", err)
			}
			if err := l.InitPIN(h, user); err != nil {
				return fmt.Errorf("token made, but its user PIN is not set (tpm11 reset-pin): %w", err)
			}
			ti, err := l.TokenInfo(slot)
			if err != nil {
				return err
			}
			t := token{slot, ti}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), t.json())
			}
			verb := "initialized"
			if reinit {
				verb = "re-initialized (all objects destroyed)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %q %s, serial %s  %s\n", ti.Label, verb, ti.Serial, t.URI())
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "the token's label (at most 32 bytes)")
	c.Flags().BoolVar(&force, "force", false, "re-initialise the token named by --token or --slot, destroying its objects")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// pinRefused says whether err is about the PIN itself (wrong, locked out):
// never a reason to go on unchecked.
func pinRefused(err error) bool {
	switch ck.ToRV(err) {
	case ck.CKR_PIN_INCORRECT, ck.CKR_PIN_LOCKED, ck.CKR_PIN_LEN_RANGE:
		return true
	}
	return false
}

func deleteTokenCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "delete-token --token TOKEN",
		Short: "Delete a token and all its keys (SO PIN required)",
		Long: `Delete a token and every object in it. The token must be named (--token or
--slot) and its SO PIN is checked in the TPM first.

After a TPM clear the TPM can no longer check the SO PIN (nor use any of the
token's keys): --force then deletes the token without the check. A wrong SO
PIN is never overridden.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !g.selected(nil) {
				return usagef("name the token to delete: --token LABEL|SERIAL|pkcs11:URI or --slot N")
			}
			l, err := g.open()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := g.pick(l, nil)
			if err != nil {
				return err
			}
			n, err := countObjects(l, t)
			if err != nil {
				return err
			}
			so, err := g.soPIN(t)
			if err != nil {
				return err
			}
			err = l.DestroyToken(t.Slot, so, false)
			switch {
			case err == nil:
			case pinRefused(err):
				return fmt.Errorf("%w: nothing deleted", explainPIN(l, ck.CKU_SO, err))
			case !force:
				return fmt.Errorf("the TPM cannot check the SO PIN (%v): if the TPM was cleared the token's keys are lost, and --force deletes it unchecked", err)
			default:
				if err := l.DestroyToken(t.Slot, nil, true); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s deleted with its %d %s\n", t, n, plural(n, "object", "objects"))
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "delete even when the TPM cannot check the SO PIN (after a TPM clear)")
	return c
}

func setPINCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-pin",
		Short: "Change the user PIN",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.changePIN(cmd, ck.CKU_USER, "new user PIN", "TPM11_NEW_PIN", "user PIN changed; keys unchanged",
				func(l *tpmtoken.Library, h uint64, cur, next []byte) error { return l.SetPIN(h, cur, next) })
		},
	}
}

// resetPINCmd is C_InitPIN by the SO: the way back after a forgotten user
// PIN. The TPM's lockout still applies to the SO PIN.
func resetPINCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-pin",
		Short: "As SO, give the user a new PIN; keys are kept",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.changePIN(cmd, ck.CKU_SO, "new user PIN", "TPM11_NEW_PIN", "user PIN reset; keys kept",
				func(l *tpmtoken.Library, h uint64, _, next []byte) error { return l.InitPIN(h, next) })
		},
	}
}

func setSOPINCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-so-pin",
		Short: "Change the SO PIN",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.changePIN(cmd, ck.CKU_SO, "new SO PIN", "TPM11_NEW_SO_PIN", "SO PIN changed",
				func(l *tpmtoken.Library, h uint64, cur, next []byte) error { return l.SetPIN(h, cur, next) })
		},
	}
}

// changePIN reads who's PIN and the new one (checked first), logs in as
// who and applies the change.
func (g *globals) changePIN(cmd *cobra.Command, who ck.UserType, newWhat, newEnv, done string,
	apply func(l *tpmtoken.Library, h uint64, cur, next []byte) error) error {
	return g.withToken(cmd, nil, false, func(c *ctx) error {
		var cur []byte
		var err error
		if who == ck.CKU_SO {
			cur, err = g.soPIN(c.t)
		} else {
			cur, err = g.userPIN(c.t)
		}
		if err != nil {
			return err
		}
		next, err := readNewPIN(newWhat, newEnv, g.newPINFile)
		if err != nil {
			return err
		}
		if err := login(c.l, c.h, who, cur); err != nil {
			return err
		}
		if err := apply(c.l, c.h, cur, next); err != nil {
			return err
		}
		fmt.Fprintln(c.out, done)
		return nil
	})
}

// explainPIN turns a refused PIN into words (tries left, lockout).
func explainPIN(l *tpmtoken.Library, who ck.UserType, err error) error {
	what := map[ck.UserType]string{ck.CKU_SO: "SO PIN", ck.CKU_USER: "user PIN"}[who]
	switch ck.ToRV(err) {
	case ck.CKR_PIN_INCORRECT:
		st, lerr := l.Lockout()
		switch {
		case lerr != nil || st.MaxTries == 0:
			return fmt.Errorf("wrong %s", what)
		case st.InLockout || st.Counter >= st.MaxTries:
			return fmt.Errorf("wrong %s; that was the last try: the TPM is now in dictionary-attack lockout and accepts no PIN until it recovers", what)
		default:
			left := st.MaxTries - st.Counter
			return fmt.Errorf("wrong %s: %d %s left before the TPM locks out (the count is TPM-wide and drops with time)", what, left, plural(int(left), "try", "tries"))
		}
	case ck.CKR_PIN_LOCKED:
		return errors.New("the TPM is in dictionary-attack lockout: it accepts no PIN until it recovers (tpm11 info shows the count; see README, troubleshooting)")
	case ck.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("the %s must be %d to %d bytes long", what, tpmtoken.MinPINLen, tpmtoken.MaxPINLen)
	case ck.CKR_USER_PIN_NOT_INITIALIZED:
		return errors.New("the token has no user PIN yet: tpm11 reset-pin (as SO) sets one")
	}
	return err
}
