package tpmtoken

import (
	"bytes"
	"errors"
	"io"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpmtoken/store"
)

// Backup and restore of a token: its store directory, copied consistently
// while other processes use it (store.Backup). A backup holds only what
// the store holds: TPM-wrapped blobs, usable only in the TPM that wrapped
// them; it restores the token on that TPM (after its files were lost),
// never onto another.

// BackupToken writes the token in slot id to w (a tar stream).
func (l *Library) BackupToken(id uint64, w io.Writer) error {
	s, err := l.slot(id)
	if err != nil {
		return err
	}
	if s.tok == nil {
		return ck.E(ck.CKR_TOKEN_NOT_RECOGNIZED)
	}
	return l.store.Backup(s.tok.record().Serial, w)
}

// RestoreToken reads a backup and writes its token into the store, if it
// belongs to this TPM and no token of its serial exists; it returns the
// token's serial and label. The library sees it once reopened.
func (l *Library) RestoreToken(r io.Reader) (string, string, error) {
	t, files, err := store.ReadBackup(r)
	if err != nil {
		return "", "", ck.Wrap(ck.CKR_ARGUMENTS_BAD, err)
	}
	storage := &tpm.Loadable{ID: "restore-probe:" + newUID(), Parent: l.srk,
		Public: tpm2.BytesAs2B[tpm2.TPMTPublic](t.Storage.Public), Private: tpm2.TPM2BPrivate{Buffer: t.Storage.Private}}
	name, err := do(l, 0, func(e *tpm.Engine) ([]byte, error) {
		n := l.srkName(e)
		if len(t.TPMName) == 0 { // made before the name was recorded: ask the TPM
			_, err := e.Handle(storage)
			e.Forget(storage.ID)
			if err != nil {
				return n, errOtherTPM
			}
			return n, nil
		}
		return n, nil
	})
	if errors.Is(err, errOtherTPM) || (err == nil && len(t.TPMName) > 0 && !bytes.Equal(t.TPMName, name)) {
		return "", "", ck.Errorf(ck.CKR_ARGUMENTS_BAD, "the backup of token %q (serial %s) belongs to another TPM, or to this one before it was cleared: its keys can be used only in the TPM that made them; nothing restored", t.Label, t.Serial)
	}
	if err != nil {
		return "", "", err
	}
	if err := l.store.Restore(t, files); err != nil {
		return "", "", ck.Wrap(ck.CKR_ARGUMENTS_BAD, err)
	}
	return t.Serial, t.Label, nil
}

var errOtherTPM = errors.New("another TPM")
