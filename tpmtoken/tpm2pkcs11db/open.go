// Package tpm2pkcs11db reads the store of tpm2-pkcs11 (its SQLite database
// tpm2_pkcs11.sqlite3, made by tpm2_ptool) into package tpm2pkcs11's
// types; see there for what the store holds. Nothing here writes: the
// database file is read into memory and parsed (sqlite.go). It is apart
// from tpm2pkcs11 so that libtpm11.so, which never reads a store (the CLI
// does, for tpm11 migrate), does not link its YAML parser.
package tpm2pkcs11db

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/tpm11/tpm11/tpmtoken/tpm2pkcs11"
)

// DBFile is the database's name in a store directory.
const DBFile = "tpm2_pkcs11.sqlite3"

// maxDB bounds the file read: a store of many keys is a few MiB.
const maxDB = 256 << 20

// Open reads the store at path: a directory holding tpm2_pkcs11.sqlite3, or
// that file.
func Open(path string) (*tpm2pkcs11.Store, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, DBFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDB+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDB {
		return nil, fmt.Errorf("%s is larger than %d MiB: not a tpm2-pkcs11 store", path, maxDB>>20)
	}
	// A write-ahead log not yet copied back holds changes the file lacks.
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
		return nil, fmt.Errorf("%s-wal holds changes not yet in the database: let tpm2-pkcs11 finish (run tpm2_ptool listtokens once) and try again", path)
	}
	s, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

func parse(b []byte) (*tpm2pkcs11.Store, error) {
	d, err := openDB(b)
	if err != nil {
		return nil, err
	}
	prows, err := d.rows("pobjects")
	if err != nil {
		return nil, err
	}
	prims := map[int64]*tpm2pkcs11.Primary{}
	for _, r := range prows {
		p, err := primary(r)
		if err != nil {
			return nil, err
		}
		prims[p.ID] = p
	}
	trows, err := d.rows("tokens")
	if err != nil {
		return nil, err
	}
	srows, err := d.rows("sealobjects")
	if err != nil {
		return nil, err
	}
	orows, err := d.rows("tobjects")
	if err != nil {
		return nil, err
	}
	s := &tpm2pkcs11.Store{}
	byID := map[int64]*tpm2pkcs11.Token{}
	for _, r := range trows {
		t := &tpm2pkcs11.Token{ID: num(r["id"]), Label: str(r["label"]), Primary: prims[num(r["pid"])]}
		if t.Primary == nil {
			return nil, fmt.Errorf("token %q: its primary object %d is missing", t.Label, num(r["pid"]))
		}
		byID[t.ID] = t
		s.Tokens = append(s.Tokens, t)
	}
	for _, r := range srows {
		t := byID[num(r["tokid"])]
		if t == nil {
			continue
		}
		t.UserPub, t.UserPriv, t.UserSalt = blob(r["userpub"]), blob(r["userpriv"]), str(r["userauthsalt"])
	}
	for _, r := range orows {
		t := byID[num(r["tokid"])]
		if t == nil {
			continue
		}
		var attrs map[uint64]any
		if err := yaml.Unmarshal([]byte(str(r["attrs"])), &attrs); err != nil {
			return nil, fmt.Errorf("token %q object %d: attributes: %v", t.Label, num(r["id"]), err)
		}
		t.Objects = append(t.Objects, &tpm2pkcs11.Object{ID: num(r["id"]), Attrs: attrs})
	}
	for _, t := range s.Tokens {
		sort.Slice(t.Objects, func(i, j int) bool { return t.Objects[i].ID < t.Objects[j].ID })
	}
	return s, nil
}

func primary(r map[string]any) (*tpm2pkcs11.Primary, error) {
	p := &tpm2pkcs11.Primary{ID: num(r["id"]), Auth: str(r["objauth"])}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(str(r["config"])), &cfg); err != nil {
		return nil, fmt.Errorf("primary object %d: config: %v", p.ID, err)
	}
	if tr, _ := cfg["transient"].(bool); tr {
		p.Template, _ = cfg["template-name"].(string)
		if p.Template == "" {
			p.Template = "tpm2-tools-default"
		}
		return p, nil
	}
	tr, _ := cfg["esys-tr"].(string)
	esys, err := hex.DecodeString(tr)
	if err != nil {
		return nil, fmt.Errorf("primary object %d: esys-tr is not hex", p.ID)
	}
	// ESYS_TR serialization: handle, TPM2B_NAME, resource type (1 = key),
	// TPM2B_PUBLIC.
	if len(esys) < 6 {
		return nil, fmt.Errorf("primary object %d: esys-tr too short", p.ID)
	}
	p.Handle = binary.BigEndian.Uint32(esys)
	rest := esys[4:]
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n+4+2 {
		return nil, fmt.Errorf("primary object %d: esys-tr too short", p.ID)
	}
	rest = rest[2+n:]
	if binary.BigEndian.Uint32(rest) != 1 {
		return nil, fmt.Errorf("primary object %d: esys-tr names no key", p.ID)
	}
	rest = rest[4:]
	n = int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n {
		return nil, fmt.Errorf("primary object %d: esys-tr public area truncated", p.ID)
	}
	p.Public = rest[:2+n]
	return p, nil
}

func num(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		var n int64
		_, _ = fmt.Sscan(v, &n)
		return n
	}
	return 0
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func blob(v any) []byte {
	switch v := v.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}
