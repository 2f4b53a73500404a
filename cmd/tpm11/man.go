//go:build mangen

package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/tpm11/tpm11/version"
)

// The man pages are generated from the commands by a build of tpm11 with
// the mangen tag (make man), so the installed binary does not carry the
// generator:  go run -tags mangen ./cmd/tpm11 gen-man DIR
func init() {
	addHidden = func(root *cobra.Command, _ *globals) {
		root.AddCommand(&cobra.Command{
			Use:    "gen-man DIR",
			Hidden: true,
			Args:   cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := os.MkdirAll(args[0], 0o755); err != nil {
					return err
				}
				// Reproducible: the date comes from SOURCE_DATE_EPOCH when set.
				date := time.Now()
				if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
					date = time.Unix(s, 0).UTC()
				}
				root.DisableAutoGenTag = true
				return doc.GenManTree(root, &doc.GenManHeader{
					Title: "TPM11", Section: "1", Date: &date,
					Source: fmt.Sprintf("tpm11 %s", version.Version), Manual: "tpm11 manual",
				}, args[0])
			},
		})
	}
}
