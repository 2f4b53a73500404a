package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func backupCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "backup [--token X] [-o FILE]",
		Short: "Copy a token (its store files) consistently, while others use it",
		Long: `Write a copy of the token's store files (a tar stream) to FILE or standard
output, taken while no process is half-way through changing the token (they
wait for the copy). The copy holds what the store holds: TPM-wrapped key
blobs that only this TPM can use. It restores the token on this TPM, after
its files were lost (tpm11 restore); on another TPM, or after a TPM clear,
its keys are gone for good.`,
		Example: `  tpm11 backup --token mytoken -o mytoken.tar`,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := g.pick(l, nil)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				w := bufio.NewWriter(cmd.OutOrStdout())
				if err := l.BackupToken(t.Slot, w); err != nil {
					return err
				}
				return w.Flush()
			}
			f, err := os.OpenFile(out+".tmp", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			if err := l.BackupToken(t.Slot, f); err != nil {
				f.Close()
				os.Remove(out + ".tmp")
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(out+".tmp", out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s backed up to %s\n", t, out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "the backup file (default: standard output)")
	return c
}

func restoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a token from tpm11 backup, on the TPM it belongs to",
		Long: `Restore a token from a backup into the store: refused if a token of its
serial is there, or if the backup belongs to another TPM (or to this one
before a clear): its keys can be used only in the TPM that made them.`,
		Args: exactArgs(1, "one backup file (- for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			l, err := g.open()
			if err != nil {
				return err
			}
			defer l.Close()
			serial, label, err := l.RestoreToken(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %q (serial %s) restored\n", label, serial)
			return nil
		},
	}
}
