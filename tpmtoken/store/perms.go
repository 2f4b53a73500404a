package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/tpm11/tpm11/ck"
)

// Who may change what in a store. The store sets the mode of everything it
// makes, for the module and the CLI alike.
//
// A private store (the per-user default) is one user's: 0700 directories,
// 0600 files.
//
// A shared store is one whose root has the set-group-ID bit (the
// system-wide /var/lib/tpm11 the package makes for the tpm11 group, or any
// directory an administrator sets up so). A token belongs to the user who
// made it:
//   - every member of the group may make tokens of their own: tokens/ is
//     group-writable and sticky (3770), so no one removes or renames
//     another's token;
//   - every member may use every token (read its objects, sign with its
//     PIN: the keys are guarded by the TPM): token directories are 2750,
//     files 0640;
//   - only a token's owner (and root) changes it: its directories are not
//     group-writable, so no member adds, replaces or removes its files. To
//     anyone else the token is write-protected (CKR_TOKEN_WRITE_PROTECTED).
//
// Readers check what they read too, so that a store set up otherwise (an
// older release made token directories group-writable) cannot be used to
// substitute a token's files: a token's record, objects and index are used
// only when owned by the owner of the token's directory (or root), not
// writable by group or others, and naming themselves (the record its
// serial, an object its UID); tokens/ only when owned by the root's owner
// or root. Anything else is refused before it is used: a substituted PIN
// seal is never tried with a PIN (a wrong one counts towards the TPM's
// dictionary-attack lockout, TPM-wide).

// Modes in a shared store (private: 0700 and 0600).
const (
	sharedTokensDir = syscall.S_ISGID | syscall.S_ISVTX | 0o770
	sharedDir       = syscall.S_ISGID | 0o750
	sharedFile      = 0o640
)

// ErrUntrusted is a store file written by someone other than its token's
// owner, or writable by others: it is not used.
var ErrUntrusted = errors.New("store: file not written by its token's owner (substituted?)")

// detectShared sets s.shared when the root is set-group-ID.
func (s *Store) detectShared() error {
	var st syscall.Stat_t
	if err := syscall.Stat(s.Root, &st); err != nil {
		return err
	}
	s.shared = st.Mode&syscall.S_ISGID != 0
	s.rootUID = st.Uid
	if s.shared && st.Uid == uint32(os.Getuid()) && st.Mode&syscall.S_ISVTX == 0 {
		// No member may rename tokens/ away and put one of their own.
		_ = syscall.Chmod(s.Root, st.Mode&0o7777|syscall.S_ISVTX)
	}
	return nil
}

func (s *Store) filePerm() uint32 {
	if s.shared {
		return sharedFile
	}
	return 0o600
}

func (s *Store) dirPerm(tokens bool) uint32 {
	switch {
	case !s.shared:
		return 0o700
	case tokens:
		return sharedTokensDir
	}
	return sharedDir
}

// mkdir makes dir with mode perm (umask aside), or brings one this user
// owns to it (made by an older release).
func (s *Store) mkdir(dir string, perm uint32) error {
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return writeErr(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return writeErr(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("store: %s is not a directory", dir)
	}
	if st.Uid == uint32(os.Getuid()) && st.Mode&0o7777 != perm {
		_ = syscall.Chmod(dir, perm)
	}
	return nil
}

// ownerOf is the owner of directory dir (a token's: its owner).
func ownerOf(dir string) (uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: syscall.ENOTDIR}
	}
	return st.Uid, nil
}

// trusted reports whether a file with status st may be used as its token's
// (owned by owner) in this store.
func trusted(shared bool, st *syscall.Stat_t, owner uint32) bool {
	if !shared {
		return true
	}
	return (st.Uid == owner || st.Uid == 0) && st.Mode&0o022 == 0
}

// checkTokensDir refuses a tokens/ that is not the store owner's.
func (s *Store) checkTokensDir() error {
	if !s.shared {
		return nil
	}
	uid, err := ownerOf(s.tokensDir())
	if err != nil {
		return err
	}
	if uid != s.rootUID && uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not the store's owner", ErrUntrusted, s.tokensDir(), uid)
	}
	return nil
}

// Writable reports whether this process may change the token (its owner's,
// or root's, in a shared store).
func (s *Store) Writable(serial string) bool {
	return syscall.Access(s.tokenDir(serial), 2 /* W_OK */) == nil
}

// writeErr gives a failed write its CK_RV: a full store is out of device
// memory, one that may not be written (read-only, another user's token)
// write-protected.
func writeErr(err error) error {
	var ce *ck.Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOSPC, syscall.EDQUOT:
			return ck.Wrap(ck.CKR_DEVICE_MEMORY, err)
		case syscall.EROFS, syscall.EACCES, syscall.EPERM:
			return ck.Wrap(ck.CKR_TOKEN_WRITE_PROTECTED, err)
		}
	}
	return err
}
