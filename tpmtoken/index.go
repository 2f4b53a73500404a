package tpmtoken

import (
	"github.com/tpm11/tpm11/ck"
)

// indexedAttrs are what applications find objects by (a key by CKA_ID or
// CKA_LABEL, everything of a class): a find naming one of them looks at
// the matching objects only, not at every object of the token.
var indexedAttrs = []ck.AttributeType{ck.CKA_ID, ck.CKA_LABEL, ck.CKA_CLASS}

// objIndex maps an indexed attribute's value to the handles holding it. It
// is rebuilt on the first find after any change (objects added, destroyed,
// modified, or changed by another process), so it costs nothing to keep.
type objIndex struct {
	valid bool
	by    map[ck.AttributeType]map[string][]uint64
}

// invalidate marks the index stale. Callers hold t.mu.
func (t *Token) invalidate() { t.idx.valid = false }

// candidates returns the handles that can match tmpl, from the smallest
// indexed set it names; ok is false when tmpl names no indexed attribute.
// Callers hold t.mu.
func (t *Token) candidates(tmpl []Attr) (hs []uint64, ok bool) {
	if !t.idx.valid {
		t.idx.by = map[ck.AttributeType]map[string][]uint64{}
		for _, typ := range indexedAttrs {
			t.idx.by[typ] = map[string][]uint64{}
		}
		for h, o := range t.objects {
			for _, typ := range indexedAttrs {
				if v, has := o.Attrs[typ]; has {
					t.idx.by[typ][string(v)] = append(t.idx.by[typ][string(v)], h)
				}
			}
		}
		t.idx.valid = true
	}
	for _, a := range tmpl {
		if m, indexed := t.idx.by[a.Type]; indexed {
			set := m[string(a.Value)]
			if !ok || len(set) < len(hs) {
				hs, ok = set, true
			}
		}
	}
	return hs, ok
}
