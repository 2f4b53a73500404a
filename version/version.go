// Package version is the one version of tpm11: the tpm11 command prints it,
// the module reports it as CK_INFO.libraryVersion (major.minor), and the
// Makefile reads it from this file for the Debian package. Releases are
// tagged v<Version> (semantic versioning); CHANGELOG.md has a section for it.
package version

import (
	"strconv"
	"strings"
)

// Version is MAJOR.MINOR.PATCH.
const Version = "0.2.0"

// MajorMinor is Version's first two numbers, as CK_VERSION holds them.
func MajorMinor() (major, minor uint8) {
	parts := strings.SplitN(Version, ".", 3)
	ma, _ := strconv.ParseUint(parts[0], 10, 8)
	mi, _ := strconv.ParseUint(parts[1], 10, 8)
	return uint8(ma), uint8(mi)
}
