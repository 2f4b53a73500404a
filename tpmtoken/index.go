package tpmtoken

import (
	"cmp"
	"hash/maphash"
	"slices"

	"github.com/tpm11/tpm11/ck"
)

// indexedAttrs are what applications find objects by (a key by CKA_ID or
// CKA_LABEL, everything of a class): a find naming one of them looks at
// the matching objects only, not at every object of the token.
var indexedAttrs = []ck.AttributeType{ck.CKA_ID, ck.CKA_LABEL, ck.CKA_CLASS}

// objIndex maps an indexed attribute's value to the handles holding it. It
// is rebuilt on the first find after any change (objects added, destroyed,
// modified, or changed by another process), so it costs nothing to keep;
// each attribute's part is made on the first find that names it.
type objIndex struct {
	valid bool
	by    map[ck.AttributeType]attrIndex
}

// attrIndex is one attribute's part: the holders' handles sorted by a
// hash of the value (no map, no allocation per object: made in a fraction
// of the time a map takes, on the first find after a start or a change);
// a hash shared by two values only adds a candidate, which the find's
// match of the template drops.
type attrIndex []hashed

type hashed struct{ hash, h uint64 }

func (x attrIndex) get(v []byte) []uint64 {
	k := maphash.Bytes(indexSeed, v)
	i, _ := slices.BinarySearchFunc(x, k, func(e hashed, k uint64) int { return cmp.Compare(e.hash, k) })
	var hs []uint64
	for ; i < len(x) && x[i].hash == k; i++ {
		hs = append(hs, x[i].h)
	}
	return hs
}

var indexSeed = maphash.MakeSeed()

// invalidate marks the index stale. Callers hold t.mu.
func (t *Token) invalidate() { t.idx.valid = false }

// candidates returns the handles that can match tmpl, from the smallest
// indexed set it names; ok is false when tmpl names no indexed attribute.
// Callers hold t.mu.
func (t *Token) candidates(tmpl []Attr) (hs []uint64, ok bool) {
	if !t.idx.valid {
		t.idx.by = map[ck.AttributeType]attrIndex{}
		t.idx.valid = true
	}
	for _, a := range tmpl {
		if !slices.Contains(indexedAttrs, a.Type) {
			continue
		}
		x, made := t.idx.by[a.Type]
		if !made {
			x = t.indexBy(a.Type)
		}
		set := x.get(a.Value)
		if !ok || len(set) < len(hs) {
			hs, ok = set, true
		}
	}
	return hs, ok
}

// indexBy makes the index of attribute typ. Callers hold t.mu.
func (t *Token) indexBy(typ ck.AttributeType) attrIndex {
	x := make(attrIndex, 0, len(t.objects))
	for h, o := range t.objects {
		if v, has := o.Attrs[typ]; has {
			x = append(x, hashed{maphash.Bytes(indexSeed, v), h})
		}
	}
	slices.SortFunc(x, func(a, b hashed) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.h, b.h)
	})
	t.idx.by[typ] = x
	return x
}
