package tpm_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
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

// manyKeys makes n ECDSA P-256 keys under a storage key (with an
// authValue, as the token's is) under the SRK.
func manyKeys(t *testing.T, e *tpm.Engine, n int) []*tpm.Loadable {
	t.Helper()
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	storageAuth := []byte("0123456789abcdef0123456789abcdef")
	pub, priv, err := e.Create(srk, tpm.StorageTemplate(), storageAuth, nil)
	require.NoError(t, err)
	parent := &tpm.Loadable{ID: "storage", Parent: srk, Public: pub, Private: priv, Auth: storageAuth}
	var keys []*tpm.Loadable
	for i := 0; i < n; i++ {
		pub, priv, err := e.Create(parent, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
		require.NoError(t, err)
		keys = append(keys, &tpm.Loadable{ID: fmt.Sprint("k", i), Parent: parent, Public: pub, Private: priv})
	}
	return keys
}

// signVerified signs with k and checks the signature with Go's ECDSA
// against k's public area: the key the TPM used is k.
func signVerified(t *testing.T, e *tpm.Engine, k *tpm.Loadable) error {
	t.Helper()
	digest := sha256.Sum256([]byte("many keys " + k.ID))
	sig, err := e.Sign(k, digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
	if err != nil {
		return err
	}
	ec, err := sig.Signature.ECDSA()
	require.NoError(t, err)
	p, err := k.Public.Contents()
	require.NoError(t, err)
	parms, _ := p.Parameters.ECCDetail()
	point, _ := p.Unique.ECC()
	pk, err := tpm2.ECDSAPub(parms, point)
	require.NoError(t, err)
	require.True(t, ecdsa.Verify(pk, digest[:], new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer)),
		"signature of %s", k.ID)
	return nil
}

// transients counts the transient objects the TPM holds.
func transients(t *testing.T, tr transport.TPM) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 64}.Execute(tr)
	require.NoError(t, err)
	hs, err := rsp.CapabilityData.Data.Handles()
	require.NoError(t, err)
	return len(hs.Handle)
}

// 16 keys signed round-robin on swtpm's 3 object slots: once each key has
// been evicted once, a signature with a key the TPM does not hold costs
// exactly 3 commands (FlushContext of the evicted key, whose context is
// kept; ContextLoad; Sign), never a ContextSave again nor a Load under
// the parent; the TPM never holds more than its slots; nothing is left.
func TestEngineManyKeysCostAFlushAndAContextLoad(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	keys := manyKeys(t, e, 16)
	for round := 0; round < 4; round++ {
		for _, k := range keys {
			before := e.Commands
			require.NoError(t, signVerified(t, e, k))
			if round >= 2 { // rounds 0 and 1 load from blobs and save each key once
				require.Equal(t, uint64(3), e.Commands-before, "round %d, %s: flush, context load, sign", round, k.ID)
			}
		}
		require.LessOrEqual(t, transients(t, tr), 3)
	}
	// The key signed last is loaded: one command.
	before := e.Commands
	require.NoError(t, signVerified(t, e, keys[15]))
	require.Equal(t, uint64(1), e.Commands-before)

	e.SaveAll() // a hand-over: flushes only, every context being saved
	require.Zero(t, transients(t, tr))
	// What was loaded when handed over comes back by ContextLoad: 2 commands.
	before = e.Commands
	require.NoError(t, signVerified(t, e, keys[15]))
	require.Equal(t, uint64(2), e.Commands-before)
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// Saved contexts survive another user of the TPM: the Engine hands the
// TPM over (SaveAll, Disconnected, as the token does when idle), another
// Engine fills every slot and flushes what it finds (as one does after a
// process died), and the first one's keys then load from their saved
// contexts, with no Load.
func TestEngineSavedContextsSurviveAnotherUser(t *testing.T) {
	tr := swtpmtest.Start(t)
	e := tpm.NewEngine(tr, 3)
	keys := manyKeys(t, e, 5)
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			require.NoError(t, signVerified(t, e, k))
		}
	}
	e.SaveAll()
	e.Disconnected()

	other := tpm.NewEngine(tr, 3)
	otherKeys := manyKeys(t, other, 3)
	for _, k := range otherKeys {
		require.NoError(t, signVerified(t, other, k))
	}
	other.SaveAll()
	for i := 0; i < 3; i++ { // left loaded, as by a process that died
		_, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm.SRKTemplate()}.Execute(tr)
		require.NoError(t, err)
	}

	for _, k := range keys {
		before := e.Commands
		require.NoError(t, signVerified(t, e, k))
		// At most: list and flush 3 of the others' objects, flush one
		// of ours, context load, the retried load, sign.
		require.Less(t, e.Commands-before, uint64(10), "%s loaded from its saved context, not its blobs", k.ID)
	}
	for _, k := range keys {
		before := e.Commands
		require.NoError(t, signVerified(t, e, k))
		require.Equal(t, uint64(3), e.Commands-before, "%s: flush, context load, sign", k.ID)
	}
	e.FlushAll()
	other.FlushAll()
	swtpmtest.CheckNoLeaks(t, tr, 0)
}

// A TPM restarted (swtpm killed and started again: TPM2_Startup(CLEAR))
// between signatures invalidates every saved context: the ContextLoad fails
// and each key, its parent and the SRK are loaded again from their blobs
// and template; every key signs, and is saved and swapped as before.
func TestEngineFallsBackToLoadAfterTPMRestart(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	d, err := tpm.OpenWith(srv.Spec, tpm.Options{})
	require.NoError(t, err)
	defer d.Close()
	e := tpm.NewEngine(d.TPM, d.ObjectSlots)
	keys := manyKeys(t, e, 6)
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			require.NoError(t, signVerified(t, e, k))
		}
	}
	for restart := 0; restart < 2; restart++ {
		srv.Kill()
		srv.Start()
		e.Begin()
		// The first command finds the connection gone: the job fails as
		// stale (the token runs it again), and the next one reconnects.
		if err := signVerified(t, e, keys[0]); err != nil {
			require.True(t, tpm.IsStale(err), "restart %d: %v", restart, err)
			e.Begin()
			require.NoError(t, signVerified(t, e, keys[0]), "restart %d: after the saved contexts stopped loading", restart)
		}
		for round := 0; round < 3; round++ {
			for _, k := range keys {
				before := e.Commands
				require.NoError(t, signVerified(t, e, k), "restart %d, round %d", restart, round)
				if round == 2 {
					require.Equal(t, uint64(3), e.Commands-before, "restart %d: %s swapped by its new saved context", restart, k.ID)
				}
			}
		}
	}
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, d.TPM, 0)
}

// A restarted TPM whose first command is a ContextLoad (the transport
// reconnected without an error): the refused context tells the Engine that
// the key it had loaded is gone too. Its handle is never used again: the
// restarted TPM gives the same handles to the objects loaded anew, and a
// stale one would sign with another key.
func TestEngineRefusedContextForgetsStaleHandles(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	d, err := tpm.OpenWith(srv.Spec, tpm.Options{})
	require.NoError(t, err)
	defer d.Close()
	e := tpm.NewEngine(d.TPM, 3)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	var keys []*tpm.Loadable
	for i := 0; i < 5; i++ {
		pub, priv, err := e.Create(srk, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
		require.NoError(t, err)
		keys = append(keys, &tpm.Loadable{ID: fmt.Sprint("k", i), Parent: srk, Public: pub, Private: priv})
	}
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			require.NoError(t, signVerified(t, e, k))
		}
	}
	// Keep loaded only the key at the handle the restarted TPM gives the
	// second object loaded (the first: the SRK).
	var stale *tpm.Loadable
	for _, k := range keys {
		if !e.Loaded(k.ID) {
			continue
		}
		h, err := e.Handle(k)
		require.NoError(t, err)
		if h.Handle == 0x80000001 {
			stale = k
		} else {
			e.Forget(k.ID)
		}
	}
	require.NotNil(t, stale, "a key at 0x80000001")
	e.Forget(srk.ID)
	first := keys[0]
	if first == stale {
		first = keys[1]
	}
	srv.Kill()
	srv.Start()
	e.Begin()
	if err := signVerified(t, e, first); err != nil {
		require.True(t, tpm.IsStale(err), "%v", err)
		e.Begin()
		require.NoError(t, signVerified(t, e, first))
	}
	require.False(t, e.Loaded(stale.ID), "a key loaded before the restart is not taken as loaded")
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			require.NoError(t, signVerified(t, e, k), "round %d", round)
		}
	}
	e.FlushAll()
	swtpmtest.CheckNoLeaks(t, d.TPM, 0)
}
