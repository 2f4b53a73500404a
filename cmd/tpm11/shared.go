package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// shareStore keeps a shared store usable by its group. A store directory
// with the set-group-ID bit (the system-wide /var/lib/tpm11 the package
// makes for the tpm11 group, or any directory an administrator sets up so)
// is shared: what tpm11 wrote there becomes readable by the group (files)
// and usable by it (directories, set-group-ID so new files keep the
// group). Keys stay protected by the token's PIN in the TPM; the files
// hold only TPM-wrapped blobs. A private store (the per-user default) is
// left as it is: 0600 files in 0700 directories.
func (g *globals) shareStore() {
	root := g.cfg.Store
	st, err := os.Stat(root)
	if err != nil || st.Mode()&os.ModeSetgid == 0 {
		return
	}
	gid := -1
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		gid = int(s.Gid)
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if s, ok := info.Sys().(*syscall.Stat_t); ok && gid >= 0 && int(s.Gid) != gid {
			_ = os.Lchown(p, -1, gid)
		}
		mode := info.Mode()
		switch {
		case d.IsDir() && (mode.Perm()&0o070 != 0o070 || mode&os.ModeSetgid == 0):
			_ = os.Chmod(p, mode.Perm()|0o070|os.ModeSetgid)
		case mode.IsRegular() && mode.Perm()&0o040 == 0:
			_ = os.Chmod(p, mode.Perm()|0o040)
		}
		return nil
	})
}
