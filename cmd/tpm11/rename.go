package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// renameCmd changes the label and/or ID of one key: its private and public
// key and its certificate together (p11tool --set-label/--set-id does one
// object at a time).
func renameCmd(g *globals) *cobra.Command {
	var sel objectFlags
	var newLabel, newID string
	c := &cobra.Command{
		Use:     "rename (--id HEX | --label LABEL | --unique-id UID | pkcs11:URI) [--new-label L] [--new-id HEX]",
		Short:   "Change the label and/or ID of a key and its certificate together",
		Example: `  tpm11 rename --id 01 --new-label web --new-id 02`,
		Args:    maxArgs(1, "at most one pkcs11: URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			uri, tmpl, err := sel.selection(args)
			if err != nil {
				return err
			}
			if len(tmpl) == 0 {
				return usagef("name the key: --id, --label, --unique-id or a pkcs11: URI")
			}
			if !cmd.Flags().Changed("new-label") && newID == "" {
				return usagef("give --new-label, --new-id or both")
			}
			var set []tpmtoken.Attr
			if cmd.Flags().Changed("new-label") {
				if len(newLabel) > 255 {
					return usagef("--new-label is longer than 255 bytes")
				}
				set = append(set, attr(ck.CKA_LABEL, []byte(newLabel)))
			}
			var id []byte
			if newID != "" {
				if id, err = parseID(newID); err != nil {
					return err
				}
				set = append(set, attr(ck.CKA_ID, id))
			}
			return g.withToken(cmd, uri, true, func(c *ctx) error {
				objs, err := c.objects(tmpl...)
				if err != nil {
					return err
				}
				if len(objs) == 0 {
					return errors.New("no object matches: nothing renamed")
				}
				if err := oneKey(objs); err != nil {
					return err
				}
				if id != nil && objs[0].ID != fmt.Sprintf("%x", id) {
					if used, err := c.objects(attr(ck.CKA_ID, id)); err != nil || len(used) > 0 {
						if err != nil {
							return err
						}
						return fmt.Errorf("id %x is already used by %s: nothing renamed", id, describeAll(used))
					}
				}
				for i, o := range objs {
					if err := c.l.SetAttributeValue(c.h, o.handle, set); err != nil {
						if i > 0 {
							return fmt.Errorf("%s: %w (the objects before it were renamed: run the command again on them)", o, err)
						}
						return fmt.Errorf("%s: %w: nothing renamed", o, err)
					}
				}
				for _, o := range objs {
					n, err := describe(c.l, c.h, c.t, o.handle)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.out, "renamed %s id %s  %s\n", n, n.ID, n.URI)
				}
				return nil
			})
		},
	}
	sel.register(c, false)
	c.Flags().StringVar(&newLabel, "new-label", "", "the new label")
	c.Flags().StringVar(&newID, "new-id", "", "the new CKA_ID in hex")
	return c
}
