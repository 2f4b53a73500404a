// Command tpm11 inspects and diagnoses a tpm11 store and its TPM.
package main

import (
	"fmt"
	"os"

	"github.com/tpm11/tpm11/tpmtoken"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "info" {
		fmt.Fprintln(os.Stderr, "usage: tpm11 info    (shows configuration, TPM and tokens)")
		os.Exit(2)
	}
	cfg := tpmtoken.LoadConfig(os.Getenv)
	fmt.Printf("tpm:   %s\nstore: %s\n", cfg.TPM, cfg.Store)
	l, err := tpmtoken.Open(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer l.Close()
	if l.Simulated() {
		fmt.Println("WARNING: software TPM simulator: keys have no hardware protection")
	}
	for _, id := range l.SlotList(false) {
		si, _ := l.SlotInfo(id)
		fmt.Printf("slot %d: %s\n", id, si.Description)
		if ti, err := l.TokenInfo(id); err == nil && ti.Serial != "" {
			fmt.Printf("  token %q serial %s manufacturer %q\n", ti.Label, ti.Serial, ti.Manufacturer)
		}
	}
}
