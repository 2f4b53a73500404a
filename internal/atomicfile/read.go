package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Reading a file someone else may have planted: a store shared by a group,
// or a directory any user can write (the TPM's turn queue). A FIFO would
// block an open or a read for ever, a symlink to /dev/zero would be read
// until the host runs out of memory, a huge file would be allocated whole.
// So every file is opened without following a symlink (O_NOFOLLOW) and
// without blocking (O_NONBLOCK: a FIFO opens at once), checked to be a
// regular file by fstat on what was opened (no race with a rename), and its
// size checked against a bound before anything is allocated.

// ErrNotRegular is a store file that is not a regular file (a FIFO, a
// device, a directory, a symlink).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is a file larger than its kind of file can be.
var ErrTooLarge = errors.New("file too large")

// Open opens path for reading (flags adds e.g. O_RDWR, O_CREAT) as
// described above: no symlink followed, no blocking, a regular file only.
func Open(path string, flags int, perm uint32) (*os.File, error) {
	fd, err := openFd(path, flags, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func openFd(path string, flags int, perm uint32) (int, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, flags|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		if err == syscall.ELOOP {
			err = ErrNotRegular // a symlink, refused
		}
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return -1, &os.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return fd, nil
}

// Read reads the whole regular file at path, of at most limit bytes, with
// plain syscalls (os.ReadFile would also register the file with the
// network poller, which for thousands of object files was a quarter of a
// cold start).
func Read(path string, limit int64) ([]byte, error) {
	b, _, err := ReadStat(path, limit)
	return b, err
}

// ReadStat is Read that also returns the file's status (its owner and
// mode, for a reader that trusts only some writers).
func ReadStat(path string, limit int64) ([]byte, *syscall.Stat_t, error) {
	var st syscall.Stat_t
	b, err := readStat(path, limit, &st)
	return b, &st, err
}

func readStat(path string, limit int64, st *syscall.Stat_t) ([]byte, error) {
	fd, err := openFd(path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	if err := syscall.Fstat(fd, st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Size > limit {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, st.Size, limit)}
	}
	// One byte more than the size: a file that grew meanwhile (it should
	// not: files are replaced, not rewritten) is still read whole, up to
	// the limit.
	// A size of 0 may be a file whose size is not known (/proc): a page
	// to start with, not one byte at a time.
	n := st.Size + 1
	if st.Size == 0 {
		n = min(4096, limit+1)
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, limit)}
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):min(cap(buf), int(limit)+1)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, limit)}
		}
	}
}

// ReadDir lists the directory at path; anything else (a FIFO planted in
// its place) is an error, never a blocked open.
func ReadDir(path string) ([]os.DirEntry, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return f.ReadDir(-1)
}
