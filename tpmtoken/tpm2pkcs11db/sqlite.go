package tpm2pkcs11db

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// A read-only reader of SQLite 3 database files, enough for tpm2-pkcs11's
// store: it walks table b-trees (with overflow pages) and decodes records.
// The store is read from its file as it is, never opened by SQLite, so the
// original is untouched by construction (no journal, no lock, no
// checkpoint). A SQLite driver would be a large dependency (a C library or
// a translation of one) for four small tables.

// db is a database file read into memory.
type db struct {
	b      []byte
	page   int // page size
	usable int // page size less the reserved bytes
}

var errCorrupt = errors.New("not a valid SQLite database (or a damaged one)")

func openDB(b []byte) (*db, error) {
	if len(b) < 100 || !bytes.HasPrefix(b, []byte("SQLite format 3\x00")) {
		return nil, errors.New("not an SQLite 3 database")
	}
	ps := int(binary.BigEndian.Uint16(b[16:]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return nil, errCorrupt
	}
	if enc := binary.BigEndian.Uint32(b[56:]); enc != 0 && enc != 1 {
		return nil, fmt.Errorf("database text encoding %d: only UTF-8 is read", enc)
	}
	d := &db{b: b, page: ps, usable: ps - int(b[20])}
	if d.usable < 480 {
		return nil, errCorrupt
	}
	return d, nil
}

// pageAt returns page n (1-based) and the offset of its b-tree header.
func (d *db) pageAt(n uint32) ([]byte, int, error) {
	if n == 0 || uint64(n)*uint64(d.page) > uint64(len(d.b)) {
		return nil, 0, errCorrupt
	}
	p := d.b[int(n-1)*d.page : int(n)*d.page]
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	return p, hdr, nil
}

// row is one table row: its rowid and its column values (nil, int64,
// float64, string or []byte).
type row struct {
	rowid int64
	cols  []any
}

// table reads every row of the table b-tree rooted at page root.
func (d *db) table(root uint32) ([]row, error) {
	var out []row
	seen := map[uint32]bool{}
	var walk func(n uint32, depth int) error
	walk = func(n uint32, depth int) error {
		if seen[n] || depth > 64 {
			return errCorrupt // a loop
		}
		seen[n] = true
		p, h, err := d.pageAt(n)
		if err != nil {
			return err
		}
		if h+12 > len(p) {
			return errCorrupt
		}
		typ := p[h]
		ncell := int(binary.BigEndian.Uint16(p[h+3:]))
		ptrs := h + 8
		if typ == 0x05 {
			ptrs = h + 12
		}
		if ptrs+2*ncell > len(p) {
			return errCorrupt
		}
		for i := 0; i < ncell; i++ {
			off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
			if off >= len(p) {
				return errCorrupt
			}
			switch typ {
			case 0x05: // interior table page: child, key
				if off+4 > len(p) {
					return errCorrupt
				}
				if err := walk(binary.BigEndian.Uint32(p[off:]), depth+1); err != nil {
					return err
				}
			case 0x0d: // leaf table page
				r, err := d.leafCell(p, off)
				if err != nil {
					return err
				}
				out = append(out, r)
			default:
				return errCorrupt
			}
		}
		if typ == 0x05 {
			return walk(binary.BigEndian.Uint32(p[h+8:]), depth+1)
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// leafCell decodes the table leaf cell at p[off:].
func (d *db) leafCell(p []byte, off int) (row, error) {
	size, n := varint(p[off:])
	if n == 0 || size > uint64(len(d.b)) {
		return row{}, errCorrupt
	}
	off += n
	rowid, n := varint(p[off:])
	if n == 0 {
		return row{}, errCorrupt
	}
	off += n
	payload, err := d.payload(p, off, int(size))
	if err != nil {
		return row{}, err
	}
	cols, err := record(payload)
	if err != nil {
		return row{}, err
	}
	return row{rowid: int64(rowid), cols: cols}, nil
}

// payload gathers a cell's payload of size bytes starting at p[off:], with
// its overflow pages.
func (d *db) payload(p []byte, off, size int) ([]byte, error) {
	u := d.usable
	x := u - 35
	local := size
	if size > x {
		m := (u-12)*32/255 - 23
		k := m + (size-m)%(u-4)
		local = m
		if k <= x {
			local = k
		}
	}
	if off+local > len(p) {
		return nil, errCorrupt
	}
	out := append([]byte(nil), p[off:off+local]...)
	if local == size {
		return out, nil
	}
	if off+local+4 > len(p) {
		return nil, errCorrupt
	}
	next := binary.BigEndian.Uint32(p[off+local:])
	for len(out) < size {
		if next == 0 || len(out) > len(d.b) {
			return nil, errCorrupt
		}
		op, _, err := d.pageAt(next)
		if err != nil {
			return nil, err
		}
		next = binary.BigEndian.Uint32(op)
		n := min(size-len(out), u-4)
		out = append(out, op[4:4+n]...)
	}
	return out, nil
}

// varint reads a SQLite varint: its value and length (0 if truncated).
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// record decodes a record: header of serial types, then the values.
func record(b []byte) ([]any, error) {
	hs, n := varint(b)
	if n == 0 || hs > uint64(len(b)) || hs < uint64(n) {
		return nil, errCorrupt
	}
	var types []uint64
	for i := n; i < int(hs); {
		t, n := varint(b[i:int(hs)])
		if n == 0 {
			return nil, errCorrupt
		}
		types = append(types, t)
		i += n
	}
	body := b[hs:]
	var cols []any
	for _, t := range types {
		var l int
		switch {
		case t == 0, t == 8, t == 9:
		case t <= 4:
			l = int(t)
		case t == 5:
			l = 6
		case t == 6, t == 7:
			l = 8
		case t >= 12:
			l = int((t - 12) / 2)
		default:
			return nil, errCorrupt
		}
		if l > len(body) {
			return nil, errCorrupt
		}
		v := body[:l]
		body = body[l:]
		switch {
		case t == 0:
			cols = append(cols, nil)
		case t == 8, t == 9:
			cols = append(cols, int64(t-8))
		case t == 7:
			cols = append(cols, math.Float64frombits(binary.BigEndian.Uint64(v)))
		case t <= 6:
			x := int64(int8(v[0]))
			for _, c := range v[1:] {
				x = x<<8 | int64(c)
			}
			cols = append(cols, x)
		case t%2 == 0:
			cols = append(cols, append([]byte(nil), v...))
		default:
			cols = append(cols, string(v))
		}
	}
	return cols, nil
}

// tables reads the schema: each table's root page and column names.
func (d *db) tables() (map[string]tableInfo, error) {
	rows, err := d.table(1)
	if err != nil {
		return nil, err
	}
	out := map[string]tableInfo{}
	for _, r := range rows {
		if len(r.cols) < 5 {
			continue
		}
		typ, _ := r.cols[0].(string)
		name, _ := r.cols[1].(string)
		root, _ := r.cols[3].(int64)
		sql, _ := r.cols[4].(string)
		if typ != "table" || root <= 0 {
			continue
		}
		out[strings.ToLower(name)] = tableInfo{root: uint32(root), cols: columns(sql)}
	}
	return out, nil
}

type tableInfo struct {
	root uint32
	cols []string
}

// columns lists the column names of a CREATE TABLE statement, in order.
func columns(sql string) []string {
	i, j := strings.IndexByte(sql, '('), strings.LastIndexByte(sql, ')')
	if i < 0 || j < i {
		return nil
	}
	var defs []string
	depth, start := 0, i+1
	for k := i + 1; k < j; k++ {
		switch sql[k] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				defs = append(defs, sql[start:k])
				start = k + 1
			}
		}
	}
	defs = append(defs, sql[start:j])
	var cols []string
	for _, def := range defs {
		f := strings.Fields(def)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FOREIGN", "PRIMARY", "UNIQUE", "CHECK", "CONSTRAINT":
			continue
		}
		cols = append(cols, strings.ToLower(strings.Trim(f[0], "`\"[]")))
	}
	return cols
}

// rows reads table name as maps of column name to value; the INTEGER
// PRIMARY KEY column (kept as NULL in the record) is the rowid.
func (d *db) rows(name string) ([]map[string]any, error) {
	ts, err := d.tables()
	if err != nil {
		return nil, err
	}
	ti, ok := ts[name]
	if !ok {
		return nil, fmt.Errorf("no table %q: not a tpm2-pkcs11 store", name)
	}
	rs, err := d.table(ti.root)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, r := range rs {
		m := map[string]any{}
		for i, c := range ti.cols {
			var v any
			if i < len(r.cols) {
				v = r.cols[i]
			}
			if v == nil && c == "id" {
				v = r.rowid
			}
			m[c] = v
		}
		out = append(out, m)
	}
	return out, nil
}
