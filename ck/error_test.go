package ck

import (
	"errors"
	"testing"
)

// Every return value of the 3.2 header logs by its name; a value the header
// does not define (a vendor's) logs as hex.
func TestRVName(t *testing.T) {
	if len(rvNames) < 100 {
		t.Fatalf("%d names: rv.go was not generated from the 3.2 header", len(rvNames))
	}
	for _, c := range []struct {
		rv   RV
		want string
	}{
		{CKR_OK, "CKR_OK"},
		{CKR_KEY_EXHAUSTED, "CKR_KEY_EXHAUSTED"},
		{CKR_PARAMETER_SET_NOT_SUPPORTED, "CKR_PARAMETER_SET_NOT_SUPPORTED"},
		{CKR_VENDOR_DEFINED, "CKR_VENDOR_DEFINED"},
		{CKR_VENDOR_DEFINED + 1, "CKR_0x80000001"},
	} {
		if got := RVName(c.rv); got != c.want {
			t.Errorf("RVName(%#x) = %q, want %q", uint64(c.rv), got, c.want)
		}
	}
	if got := Wrap(CKR_PIN_TOO_WEAK, errors.New("short")).Error(); got != "CKR_PIN_TOO_WEAK: short" {
		t.Errorf("Error() = %q", got)
	}
}
