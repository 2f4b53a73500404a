package tpm2pkcs11db

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The reader against databases SQLite itself wrote (the sqlite3 command):
// rows spread over interior pages, values spilling into overflow pages,
// every serial type, an added column.
func TestReaderAgainstSQLite(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 not installed (Debian package sqlite3)")
	}
	for _, ps := range []int{512, 4096, 65536} {
		path := filepath.Join(t.TempDir(), "t.db")
		var sql strings.Builder
		fmt.Fprintf(&sql, "PRAGMA page_size=%d;\nBEGIN;\nCREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, s TEXT, b BLOB, f REAL);\n", ps)
		for i := 1; i <= 300; i++ {
			fmt.Fprintf(&sql, "INSERT INTO t(n,s,b,f) VALUES(%d, '%s', x'%s', %d.5);\n", int64(i)*int64(i)*1000003-7, strings.Repeat("s", i*i%9000), strings.Repeat("ab", i*37%5000), i)
		}
		sql.WriteString("INSERT INTO t(n,s,b,f) VALUES(NULL, '', x'', 0); ALTER TABLE t ADD COLUMN extra TEXT;\nCOMMIT;\n")
		cmd := exec.Command("sqlite3", path)
		cmd.Stdin = strings.NewReader(sql.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v %s", err, out)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := openDB(b)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := d.rows("t")
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 301 {
			t.Fatalf("page size %d: %d rows, want 301", ps, len(rows))
		}
		for i, r := range rows[:300] {
			n := int64(i + 1)
			if r["id"] != n || r["n"] != n*n*1000003-7 || r["s"] != strings.Repeat("s", int(n*n%9000)) ||
				!bytes.Equal(r["b"].([]byte), bytes.Repeat([]byte{0xab}, int(n*37%5000))) || r["f"] != float64(n)+0.5 || r["extra"] != nil {
				t.Fatalf("page size %d: row %d differs: %v", ps, n, r)
			}
		}
		// (SQLite keeps a whole REAL as an integer in the record.)
		if r := rows[300]; r["n"] != nil || r["s"] != "" || r["f"] != int64(0) {
			t.Fatalf("last row: %v", r)
		}
	}
}

// A damaged file is an error, never a panic or a hang.
func TestReaderDamaged(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 not installed")
	}
	path := filepath.Join(t.TempDir(), "t.db")
	cmd := exec.Command("sqlite3", path, "PRAGMA page_size=512; BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT); "+
		strings.Repeat("INSERT INTO t(s) VALUES(printf('%.*c', 3000, 'x'));", 20)+" COMMIT;")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}
	good, _ := os.ReadFile(path)
	for i := 100; i < len(good); i += 7 {
		b := bytes.Clone(good)
		b[i] ^= 0xff
		if d, err := openDB(b); err == nil {
			_, _ = d.rows("t")
		}
	}
	if _, err := openDB(good[:50]); err == nil {
		t.Fatal("a truncated header is accepted")
	}
}
