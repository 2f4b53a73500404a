package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

func cmdInfo(args []string) error {
	if err := flag.NewFlagSet("info", flag.ContinueOnError).Parse(args); err != nil {
		return err
	}
	cfg := tpmtoken.LoadConfig(os.Getenv)
	fmt.Printf("tpm:    %s\nstore:  %s\n", cfg.TPM, cfg.Store)
	l, err := tpmtoken.Open(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	d, err := l.Diagnose()
	if err != nil {
		fmt.Println("TPM:    not reachable:", err)
	} else {
		if d.Simulated {
			fmt.Println("WARNING: software TPM simulator: keys have no hardware protection")
		}
		fmt.Printf("TPM:    %q %q firmware %d.%d\n", d.TPM.Manufacturer, d.TPM.VendorString, d.TPM.FirmwareMajor, d.TPM.FirmwareMinor)
		curves := []string{}
		for _, c := range d.Curves {
			curves = append(curves, fmt.Sprintf("P-%d", c.Bits))
		}
		fmt.Printf("keys:   RSA %v bits, EC %v, AES %v bits\n", d.Caps.RSABits, curves, d.Caps.AESBits)
		fmt.Printf("lockout: %d of %d failed authorizations counted, locked out: %v (TPM-wide)\n", d.DA.Counter, d.DA.MaxTries, d.DA.InLockout)
	}
	for _, id := range l.SlotList(false) {
		si, _ := l.SlotInfo(id)
		fmt.Printf("slot %d: %s\n", id, si.Description)
		ti, err := l.TokenInfo(id)
		if err != nil || ti.Flags&ck.CKF_TOKEN_INITIALIZED == 0 {
			fmt.Println("  no token (tpm11 init makes one)")
			continue
		}
		fmt.Printf("  token %q serial %s, user PIN set: %v\n", ti.Label, ti.Serial, ti.Flags&ck.CKF_USER_PIN_INITIALIZED != 0)
	}
	return nil
}

func cmdInit(args []string) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	slot := fs.Uint64("slot", 0, "slot")
	label := fs.String("label", "", "token label")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *label == "" {
		return fmt.Errorf("-label is required")
	}
	so, err := pin("TPM11_SO_PIN", "new SO PIN")
	if err != nil {
		return err
	}
	user, err := pin("TPM11_PIN", "new user PIN")
	if err != nil {
		return err
	}
	l, err := open()
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.InitToken(*slot, so, []byte(*label)); err != nil {
		return err
	}
	h, err := l.OpenSession(*slot, ck.CKF_SERIAL_SESSION|ck.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	if err := l.Login(h, ck.CKU_SO, so); err != nil {
		return err
	}
	if err := l.InitPIN(h, user); err != nil {
		return err
	}
	ti, _ := l.TokenInfo(*slot)
	fmt.Printf("token %q initialized, serial %s\n", ti.Label, ti.Serial)
	return nil
}

// cmdSelftest makes a session key in the TPM, signs, and verifies: the
// whole path from store to TPM and back, with timings.
func cmdSelftest(args []string) error {
	k := newKeyFlags("selftest")
	if _, err := k.parse(args, false); err != nil {
		return err
	}
	return withSession(*k.slot, true, func(l *tpmtoken.Library, h uint64) error {
		pub, priv, err := l.GenerateKeyPair(h, tpmtoken.Mechanism{Type: ck.CKM_EC_KEY_PAIR_GEN},
			[]tpmtoken.Attr{attr(ck.CKA_EC_PARAMS, tpmtoken.CurveNamed("p256").Params)}, nil)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		m := tpmtoken.Mechanism{Type: ck.CKM_ECDSA_SHA256}
		if err := l.SignInit(h, m, priv); err != nil {
			return err
		}
		sig, err := l.Sign(h, []byte("tpm11 selftest"), tpmtoken.Dest{Cap: 64})
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if err := l.VerifyInit(h, m, pub); err != nil {
			return err
		}
		if err := l.Verify(h, []byte("tpm11 selftest"), sig); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		fmt.Printf("ok: P-256 key made in the TPM, signature verified; %d TPM commands\n", l.TPMCommands())
		return nil
	})
}

func cmdSetPIN(args []string) error {
	return newPIN(args, "set-pin", ck.CKU_USER, "TPM11_PIN", "user PIN", "user PIN changed; keys unchanged",
		func(l *tpmtoken.Library, h uint64, cur, next []byte) error { return l.SetPIN(h, cur, next) })
}

// cmdResetPIN is C_InitPIN by the SO: the way back after a forgotten user
// PIN. The TPM's lockout still applies to the SO PIN.
func cmdResetPIN(args []string) error {
	return newPIN(args, "reset-pin", ck.CKU_SO, "TPM11_SO_PIN", "SO PIN", "user PIN reset; keys kept",
		func(l *tpmtoken.Library, h uint64, _, next []byte) error { return l.InitPIN(h, next) })
}

// newPIN logs in as who with the PIN from env, reads the new user PIN
// (TPM11_NEW_PIN or stdin) and applies it.
func newPIN(args []string, name string, who ck.UserType, env, what, done string, apply func(l *tpmtoken.Library, h uint64, cur, next []byte) error) error {
	k := newKeyFlags(name)
	if _, err := k.parse(args, false); err != nil {
		return err
	}
	return withSession(*k.slot, false, func(l *tpmtoken.Library, h uint64) error {
		cur, err := pin(env, what)
		if err != nil {
			return err
		}
		next, err := pin("TPM11_NEW_PIN", "new user PIN")
		if err != nil {
			return err
		}
		if err := l.Login(h, who, cur); err != nil {
			return err
		}
		if err := apply(l, h, cur, next); err != nil {
			return err
		}
		fmt.Println(done)
		return nil
	})
}
