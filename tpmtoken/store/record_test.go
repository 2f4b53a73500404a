package store

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
)

func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// A record is written typed, by name, and reads back to the same C
// encoding; the file says what each value is.
func TestRecordFormat2(t *testing.T) {
	attrs := map[ck.AttributeType][]byte{
		ck.CKA_CLASS: u64(uint64(ck.CKO_PRIVATE_KEY)), ck.CKA_TOKEN: {1}, ck.CKA_LABEL: []byte("key"),
		ck.CKA_START_DATE: []byte("20260101"), ck.CKA_END_DATE: {}, ck.CKA_ALLOWED_MECHANISMS: append(u64(0x1041), u64(0x1044)...),
		ck.CKA_ID: {}, 0xd4504d05: {1},
	}
	kinds := map[ck.AttributeType]Kind{ck.CKA_CLASS: KindULong, ck.CKA_TOKEN: KindBool, ck.CKA_START_DATE: KindDate,
		ck.CKA_END_DATE: KindDate, ck.CKA_ALLOWED_MECHANISMS: KindMechanisms, 0xd4504d05: KindBool}
	obj := &Object{UID: "u1", Attrs: attrs, Attributes: Typed(attrs, func(t ck.AttributeType) Kind { return kinds[t] }),
		Public: []byte{1, 2}, Private: []byte{3}, Parent: "public"}
	b, err := json.Marshal(obj)
	require.NoError(t, err)
	for _, want := range []string{`"format":2`, `{"type":"CKA_CLASS","ulong":3}`, `{"type":"CKA_TOKEN","bool":true}`,
		`{"type":"CKA_START_DATE","date":"20260101"}`, `{"type":"CKA_ALLOWED_MECHANISMS","mechanisms":[4161,4164]}`,
		`{"type":"CKA_LABEL","bytes":"a2V5"}`, `{"type":"CKA_ID","bytes":""}`, `{"type":"0xd4504d05","bool":true}`} {
		require.Contains(t, string(b), want)
	}
	var back Object
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, attrs, back.Attrs)
	require.Equal(t, "public", back.Parent)
	require.Equal(t, []byte{1, 2}, back.Public)
}

// oldRecord is the first format's encoder, kept here only to make old
// records: the attributes as a map of their C encoding.
func oldRecord(uid string, attrs map[ck.AttributeType][]byte) []byte {
	b, _ := json.Marshal(struct {
		UID   string                      `json:"uid"`
		Attrs map[ck.AttributeType][]byte `json:"attrs"`
	}{uid, attrs})
	return b
}

// A store written by the first format still reads, through the directory
// scan like any other record.
func TestRecordFormat1StillReads(t *testing.T) {
	attrs := map[ck.AttributeType][]byte{ck.CKA_CLASS: u64(0), ck.CKA_LABEL: []byte("old"), ck.CKA_VALUE: {}}
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.PutToken(&Token{Serial: "t1"}))
	dir := filepath.Join(s.tokenDir("t1"), "objects")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "u1.obj"), oldRecord("u1", attrs), 0o600))
	objs, _, err := s.Objects("t1").Sync()
	require.NoError(t, err)
	require.Len(t, objs, 1)
	require.Equal(t, attrs, objs[0].Attrs)
}

// Hostile records are errors, never panics, and stay bounded.
func TestRecordHostile(t *testing.T) {
	for _, c := range []string{
		``, `{`, `[]`, `null`, `{"format":4,"uid":"x"}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_CLASS"}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_CLASS","ulong":1,"bool":true}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_NO_SUCH","bool":true}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"0xzz","bool":true}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_START_DATE","date":"2026-1-1"}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_LABEL","bytes":"a"},{"type":"CKA_LABEL","bytes":"b"}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_CLASS","ulong":-1}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_CLASS","ulong":18446744073709551616}]}`,
		`{"format":2,"uid":"x","attrs":{"0":"AA=="}}`,
		`{"uid":"x","attributes":[{"type":"CKA_TOKEN","bool":true}]}`,
		`{"uid":"x","attrs":{"zero":"AA=="}}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_ALLOWED_MECHANISMS","mechanisms":[` + strings.Repeat("1,", maxMechanisms) + `1]}]}`,
		`{"format":2,"uid":"x","attributes":[` + strings.Repeat(`{"type":"CKA_LABEL","bytes":""},`, maxAttributes) + `{"type":"CKA_ID","bytes":""}]}`,
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_LABEL","bytes":"` + base64.StdEncoding.EncodeToString(make([]byte, maxRecord)) + `"}]}`,
		// Templates: only in format 3, only on a template attribute, none
		// nested, bounded, each attribute one value.
		`{"format":2,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[]}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_LABEL","template":[]}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_DERIVE_TEMPLATE","template":[]}]}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_DERIVE_TEMPLATE","bytes":""}]}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_LABEL"}]}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_LABEL","bytes":""}],"bool":true}]}`,
		`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[` + strings.Repeat(`{"type":"CKA_LABEL","bytes":""},`, MaxTemplateAttrs) + `{"type":"CKA_ID","bytes":""}]}]}`,
	} {
		var o Object
		require.Error(t, json.Unmarshal([]byte(c), &o), "%.80s", c)
	}
}

// FuzzRecord: any bytes read as a record give an object or an error.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(`{"format":2,"uid":"x","attributes":[{"type":"CKA_CLASS","ulong":3},{"type":"CKA_ALLOWED_MECHANISMS","mechanisms":[1]}]}`))
	f.Add(oldRecord("x", map[ck.AttributeType][]byte{ck.CKA_CLASS: u64(3)}))
	f.Add([]byte(`{"format":3,"uid":"x","attributes":[{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_CLASS","ulong":4}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var o Object
		if json.Unmarshal(b, &o) == nil && o.Attrs == nil {
			t.Fatal("a record read without its attributes")
		}
	})
}

// An object file larger than any record is not read whole: the scan skips
// it (readObject refuses it by its size) and reads the others.
func TestOversizedRecordIsSkipped(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.PutToken(&Token{Serial: "t1"}))
	dir := filepath.Join(s.tokenDir("t1"), "objects")
	big := append([]byte(`{"uid":"big","attrs":{"3":"`), make([]byte, 2*maxRecord)...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.obj"), big, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "u1.obj"), oldRecord("u1", map[ck.AttributeType][]byte{ck.CKA_CLASS: u64(0)}), 0o600))
	_, err = s.Objects("t1").readObject(filepath.Join(dir, "big.obj"), "big")
	require.Error(t, err) // larger than any object file may be: refused before it is read
	objs, _, err := s.Objects("t1").Sync()
	require.NoError(t, err)
	require.Len(t, objs, 1)
	require.Equal(t, "u1", objs[0].UID)
}

// A template attribute is written typed, in format 3 (a record without one
// stays format 2), and reads back to the same in-memory value; a value
// that is no template (which the token never makes) is kept as bytes.
func TestRecordFormat3Templates(t *testing.T) {
	tmpl := EncodeTemplate([]TemplateAttr{{ck.CKA_CLASS, u64(4)}, {ck.CKA_SENSITIVE, []byte{1}}, {ck.CKA_LABEL, []byte("k")}})
	attrs := map[ck.AttributeType][]byte{ck.CKA_CLASS: u64(4), ck.CKA_WRAP_TEMPLATE: tmpl, ck.CKA_DERIVE_TEMPLATE: {}}
	kinds := map[ck.AttributeType]Kind{ck.CKA_CLASS: KindULong, ck.CKA_SENSITIVE: KindBool, ck.CKA_WRAP_TEMPLATE: KindTemplate,
		ck.CKA_DERIVE_TEMPLATE: KindTemplate}
	kind := func(t ck.AttributeType) Kind { return kinds[t] }
	b, err := json.Marshal(&Object{UID: "u1", Attrs: attrs, Attributes: Typed(attrs, kind)})
	require.NoError(t, err)
	for _, want := range []string{`"format":3`, `{"type":"CKA_DERIVE_TEMPLATE","template":[]}`,
		`{"type":"CKA_WRAP_TEMPLATE","template":[{"type":"CKA_CLASS","ulong":4},{"type":"CKA_SENSITIVE","bool":true},{"type":"CKA_LABEL","bytes":"aw=="}]}`} {
		require.Contains(t, string(b), want)
	}
	var back Object
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, attrs, back.Attrs)

	plain := map[ck.AttributeType][]byte{ck.CKA_CLASS: u64(4)}
	b, err = json.Marshal(&Object{UID: "u2", Attrs: plain, Attributes: Typed(plain, kind)})
	require.NoError(t, err)
	require.Contains(t, string(b), `"format":2`, "no template: still readable by format-2 code")

	bad := map[ck.AttributeType][]byte{ck.CKA_WRAP_TEMPLATE: {1, 2, 3}}
	require.NotNil(t, Typed(bad, kind)[0].Bytes)
}
