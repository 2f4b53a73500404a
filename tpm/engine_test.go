package tpm_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpm"
)

// More keys than swtpm has object slots, used round-robin: every sign must
// work and each key must verify, so the LRU swapping is real.
func TestEngineSwapsKeysBeyondObjectSlots(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	storageAuth := []byte("0123456789abcdef0123456789abcdef")
	pub, priv, err := e.Create(srk, tpm.StorageTemplate(), storageAuth, nil)
	require.NoError(t, err)
	parent := &tpm.Loadable{ID: "storage", Parent: srk, Public: pub, Private: priv, Auth: storageAuth}

	var keys []*tpm.Loadable
	for i := 0; i < 5; i++ {
		pub, priv, err := e.Create(parent, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
		require.NoError(t, err)
		keys = append(keys, &tpm.Loadable{ID: fmt.Sprint("k", i), Parent: parent, Public: pub, Private: priv})
	}
	digest := sha256.Sum256([]byte("hello"))
	var before uint64
	for round := 0; round < 3; round++ {
		before = e.Commands
		for _, k := range keys {
			sig, err := e.Sign(k, digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
			require.NoError(t, err)
			ec, err := sig.Signature.ECDSA()
			require.NoError(t, err)
			p, err := k.Public.Contents()
			require.NoError(t, err)
			parms, _ := p.Parameters.ECCDetail()
			point, _ := p.Unique.ECC()
			pk, err := tpm2.ECDSAPub(parms, point)
			require.NoError(t, err)
			require.True(t, ecdsa.Verify(pk, digest[:],
				new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer)))
		}
	}
	// A key swapped out again is flushed, not saved again (its saved
	// context loads as often as needed): in the last round each sign is
	// FlushContext, ContextLoad, Sign.
	require.Equal(t, uint64(3*len(keys)), e.Commands-before)
	// The TPM's slots are full now (SRK, parent, a key): Create still works.
	_, _, err = e.Create(parent, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)

	// A key used again costs exactly one command: no Load.
	before = e.Commands
	_, err = e.Sign(keys[4], digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	require.NoError(t, err)
	require.Equal(t, uint64(1), e.Commands-before)

	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

func TestSealUnsealChecksAuth(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	pub, priv, err := e.Create(srk, tpm.SealTemplate(), []byte("pin-derived"), []byte("secret"))
	require.NoError(t, err)
	seal := &tpm.Loadable{ID: "seal", Parent: srk, Public: pub, Private: priv, Auth: []byte("wrong")}
	_, err = e.Unseal(seal)
	require.ErrorIs(t, err, tpm2.TPMRCAuthFail)
	seal.Auth = []byte("pin-derived")
	got, err := e.Unseal(seal)
	require.NoError(t, err)
	require.Equal(t, "secret", string(got))
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// A process that died with objects loaded leaves them in a TPM without a
// resource manager: the next Engine flushes those orphans when the TPM is
// full rather than failing forever with TPM_RC_OBJECT_MEMORY.
func TestEngineFlushesOrphansOfADeadProcess(t *testing.T) {
	tr := swtpmtest.Start(t)
	for i := 0; i < 3; i++ { // the dead process's objects fill every slot
		_, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}.Execute(tr)
		require.NoError(t, err)
	}
	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	_, _, err := e.Create(srk, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// An SRK the owner keeps at the well-known persistent handle is used in
// place of re-creating it (ReadPublic instead of CreatePrimary), and keys
// made under either load under the other; a different key at that handle,
// or the same template under another hierarchy, is not used.
func TestPersistentSRK(t *testing.T) {
	tr := swtpmtest.Start(t)
	const persistent = tpm.SRKHandle
	newSRK := func() *tpm.Loadable {
		return &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate(), Persistent: persistent}
	}
	// persist makes a primary key in hierarchy and keeps it at the handle.
	persist := func(hierarchy tpm2.TPMHandle, template tpm2.TPM2BPublic) tpm2.TPM2BName {
		made, err := tpm2.CreatePrimary{PrimaryHandle: hierarchy, InPublic: template}.Execute(tr)
		require.NoError(t, err)
		_, err = tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &tpm2.NamedHandle{Handle: made.ObjectHandle, Name: made.Name},
			PersistentHandle: persistent}.Execute(tr)
		require.NoError(t, err)
		_, err = tpm2.FlushContext{FlushHandle: made.ObjectHandle}.Execute(tr)
		require.NoError(t, err)
		return made.Name
	}
	unpersist := func(name tpm2.TPM2BName) {
		_, err := tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: &tpm2.NamedHandle{Handle: persistent, Name: name},
			PersistentHandle: persistent}.Execute(tr)
		require.NoError(t, err)
	}

	// Nothing persisted yet: CreatePrimary; a key made under it.
	e := tpm.NewEngine(tr, 3)
	srk := newSRK()
	pub, priv, err := e.Create(srk, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	e.FlushAll()

	// The same template made in the endorsement hierarchy (the owner may
	// persist those too) is another key: not used.
	ekName := persist(tpm2.TPMRHEndorsement, tpm.SRKTemplate())
	e = tpm.NewEngine(tr, 3)
	h, err := e.Handle(newSRK())
	require.NoError(t, err)
	require.NotEqual(t, persistent, h.Handle)
	e.FlushAll()
	unpersist(ekName)

	// The owner persists the SRK: a new Engine reads it instead of creating it.
	srkName := persist(tpm2.TPMRHOwner, tpm.SRKTemplate())
	e = tpm.NewEngine(tr, 3)
	srk = newSRK()
	h, err = e.Handle(srk)
	require.NoError(t, err)
	require.Equal(t, persistent, h.Handle)
	require.Equal(t, uint64(1), e.Commands, "one ReadPublic, no CreatePrimary")
	digest := sha256.Sum256([]byte("persistent"))
	_, err = e.Sign(&tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}, digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	require.NoError(t, err)
	e.SaveAll()
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)

	// Another key at the handle (an RSA SRK, as other tools make) is not used.
	unpersist(srkName)
	persist(tpm2.TPMRHOwner, tpm2.New2B(tpm2.RSASRKTemplate))
	e = tpm.NewEngine(tr, 3)
	h, err = e.Handle(newSRK())
	require.NoError(t, err)
	require.NotEqual(t, persistent, h.Handle)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// Objects another process left loaded (it died without letting go) fill
// swtpm's slots. Loading a key under a parent that is already loaded must
// flush them, never evict the parent: evicting it left the key's load
// naming a flushed handle (TPM_RC_REFERENCE_H0), and every login after a
// crashed process ran its job twice.
func TestLoadUnderLoadedParentFlushesOrphansNotParent(t *testing.T) {
	tr := swtpmtest.Start(t)
	scheme := tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256}
	digest := sha256.Sum256([]byte("orphans"))

	dead := tpm.NewEngine(tr, 3) // the process that died: two objects loaded
	deadSRK := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	pub, priv, err := dead.Create(deadSRK, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	_, err = dead.Sign(&tpm.Loadable{ID: "k", Parent: deadSRK, Public: pub, Private: priv}, digest[:], scheme)
	require.NoError(t, err)

	e := tpm.NewEngine(tr, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	_, err = e.Handle(srk) // the third slot: the parent is loaded now
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}
	_, err = e.Sign(key, digest[:], scheme)
	require.NoError(t, err, "the key loads under its loaded parent once the orphans are flushed")
	e.SaveAll()
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}
