package version

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestVersionIsSemantic(t *testing.T) {
	if !regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`).MatchString(Version) {
		t.Fatalf("Version %q is not MAJOR.MINOR.PATCH", Version)
	}
	ma, mi := MajorMinor()
	if !strings.HasPrefix(Version, fmt.Sprintf("%d.%d.", ma, mi)) {
		t.Fatalf("MajorMinor() = %d.%d for %s", ma, mi, Version)
	}
}
