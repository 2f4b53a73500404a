package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tpm11/tpm11/ck"
)

// A selection (--id, --label, URI) names one key when its objects are of
// one ID and at most one of each class: a key pair and its certificate.
// Two keys may share a label, and, made by tools that do not check, an ID;
// a command that acts on one key then refuses and lists the candidates,
// each with the CKA_UNIQUE_ID that --unique-id selects, rather than pick
// one silently.

// ambiguity describes why objs are more than one key, "" if they are not.
func ambiguity(objs []object) string {
	ids := map[string]bool{}
	perClass := map[ck.ObjectClass]int{}
	for _, o := range objs {
		ids[o.ID] = true
		perClass[o.class]++
	}
	if len(ids) > 1 {
		return fmt.Sprintf("objects of %d IDs", len(ids))
	}
	for c, n := range perClass {
		if n > 1 {
			return fmt.Sprintf("%d %ss", n, classes[c].text)
		}
	}
	return ""
}

// candidates lists objs with what selects each one alone.
func candidates(objs []object) string {
	var s []string
	for _, o := range objs {
		s = append(s, fmt.Sprintf("%s id %s (--unique-id %s)", o, o.ID, o.UniqueID))
	}
	return strings.Join(s, "; ")
}

// oneKey refuses a selection that names more than one key.
func oneKey(objs []object) error {
	if why := ambiguity(objs); why != "" {
		return fmt.Errorf("that matches %s, which is more than one key: %s; name one by --id or --unique-id", why, candidates(objs))
	}
	return nil
}

// confirm asks a yes/no question on the terminal; no is the default.
func confirm(q string) (bool, error) {
	fmt.Fprintf(os.Stderr, "%s [y/N] ", q)
	line, err := stdin.ReadString('\n')
	if err != nil && line == "" {
		return false, errors.New("no answer: nothing done")
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
