package tpm

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// A kept session: one HMAC session salted to the Engine's Salt key,
// started once and used by every command that asks for it (continueSession
// set), where secret() starts and ends a session around each command. It
// saves a TPM2_StartAuthSession (and the salt's RSA/ECC operation in the
// TPM) per command: ML-KEM decapsulation, whose shared secret must cross
// the bus encrypted, is 1 command instead of 2.
//
// Protection is that of a session per command: the session key comes from
// a salt only this TPM can decrypt; each command's HMAC and parameter
// encryption key are derived from the session key, the authorized
// object's authValue and that command's fresh nonces (Part 1 §19.6, §21),
// so no two commands share an encryption key. The session is not bound:
// the authValue (trailing zeros removed, as the TPM stores it) is given
// per use, so one session authorizes any object.
//
// Lifetime (all on the Engine's one job at a time, see the package doc):
// started on first use; flushed when the Engine hands the TPM back
// (SaveAll, FlushAll), forgotten when the connection is lost or a
// session-memory shortage made the Engine flush every loaded session
// (reclaimSessions), and after any command that failed with it (a failed
// command leaves the TPM's nonce where it was, but a flushed session or a
// broken connection looks the same: start afresh rather than guess).

type keptSession struct {
	handle     tpm2.TPMHandle
	sessionKey []byte
	nonceTPM   []byte
	dead       bool
}

// keptNonce is the size of the caller's nonces: 16 bytes, the least Part 1
// allows (a nonceCaller is 16 bytes up to the session hash's digest size,
// 32 for SHA-256); fresh per command, 128 bits are enough.
const keptNonce = 16

// keptSym is the session's parameter encryption: AES-128-CFB, the one
// every TPM has.
var keptSym = tpm2.TPMTSymDef{
	Algorithm: tpm2.TPMAlgAES,
	KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
	Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
}

// keptAuth authorizes h with value over the kept session, starting it if
// needed, with parameter encryption in the directions asked (command
// parameter in, response parameter out). Without a Salt it falls back to
// secret's forms.
func (e *Engine) keptAuth(h tpm2.NamedHandle, value []byte, keep map[string]bool, in, out bool) (tpm2.AuthHandle, error) {
	if e.Salt == nil {
		return auth(h, value), nil
	}
	u, err := e.keptUseOf(bytes.TrimRight(value, "\x00"), keep, in, out)
	if err != nil {
		return tpm2.AuthHandle{}, err
	}
	return tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: u}, nil
}

// keptUseOf is one use of the kept session, started if needed, keyed with
// authValue value (nil: a session that authorizes nothing).
func (e *Engine) keptUseOf(value []byte, keep map[string]bool, in, out bool) (*keptUse, error) {
	if e.kept != nil && e.kept.dead {
		e.dropKept(false) // wipes its session key
	}
	if e.kept == nil {
		k, err := e.startKept(keep)
		if err != nil {
			return nil, err
		}
		e.kept = k
	}
	u := &keptUse{k: e.kept, auth: value}
	u.attrs.ContinueSession = true
	u.attrs.Decrypt, u.attrs.Encrypt = in, out
	return u, nil
}

// secretOut authorizes key h for a command whose response parameter is a
// secret (a decrypted key, a shared secret), so that it crosses the bus
// encrypted: over the kept session, or, for a key with a policy, with its
// policy session, the kept session added as a second session present only
// for parameter encryption (Part 1 §19.6.1, §21: it authorizes no handle,
// so its HMAC and encryption keys are the session key alone). The extra
// sessions go after the handles' (rawCmd.extra). Without a Salt there is
// nothing to encrypt with: the key's own authorization alone.
func (e *Engine) secretOut(h tpm2.NamedHandle, key *Loadable, keep map[string]bool) (tpm2.AuthHandle, []tpm2.Session, error) {
	if key.Policy == nil {
		ka, err := e.keptAuth(h, key.Auth, keep, false, true)
		return ka, nil, err
	}
	if e.Salt == nil {
		return e.keyAuth(h, key, keep), nil, nil
	}
	// The kept session first: its salt key may need room, which the
	// policy session (started inside execRaw) does not.
	u, err := e.keptUseOf(nil, keep, false, true)
	if err != nil {
		return tpm2.AuthHandle{}, nil, err
	}
	return e.keyAuth(h, key, keep), []tpm2.Session{u}, nil
}

func (e *Engine) startKept(keep map[string]bool) (*keptSession, error) {
	keep[e.Salt.ID] = true
	sh, err := e.handle(e.Salt, keep)
	if err != nil {
		return nil, err
	}
	key, err := tpm2.ImportEncapsulationKey(&e.slots[e.Salt.ID].pub)
	if err != nil {
		return nil, err
	}
	salt, encSalt, err := tpm2.CreateEncryptedSalt(rand.Reader, key)
	if err != nil {
		return nil, err
	}
	defer clear(salt)
	nonce := make([]byte, keptNonce)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	rsp, err := tpm2.StartAuthSession{
		TPMKey:        sh.Handle,
		Bind:          tpm2.TPMRHNull,
		NonceCaller:   tpm2.TPM2BNonce{Buffer: nonce},
		EncryptedSalt: tpm2.TPM2BEncryptedSecret{Buffer: encSalt},
		SessionType:   tpm2.TPMSEHMAC,
		Symmetric:     keptSym,
		AuthHash:      tpm2.TPMAlgSHA256,
	}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	// The salt key has done its part (the session needs it no more): it
	// is the first to make room now, not the key the session is for,
	// which would be loaded again by the next call (a ContextLoad and a
	// FlushContext more after every hand-over of the TPM).
	e.slots[e.Salt.ID].lastUse = 0
	k := &keptSession{handle: tpm2.TPMHandle(rsp.SessionHandle.HandleValue()), nonceTPM: rsp.NonceTPM.Buffer}
	k.sessionKey = tpm2.KDFa(crypto.SHA256, salt, "ATH", k.nonceTPM, nonce, 256)
	return k, nil
}

// dropKept ends the kept session: flushed if flush (the TPM is handed
// back, or the Engine empties it), else only forgotten (already gone).
func (e *Engine) dropKept(flush bool) {
	k := e.kept
	e.kept = nil
	if k == nil {
		return
	}
	if flush && !k.dead {
		_, _ = tpm2.FlushContext{FlushHandle: k.handle}.Execute(e.tr())
	}
	clear(k.sessionKey)
	k.dead = true
}

// keptUse is one command's use of the kept session (a tpm2.Session: go-tpm's
// Execute and execRaw drive it as any session).
type keptUse struct {
	k           *keptSession
	auth        []byte
	attrs       tpm2.TPMASession
	nonceCaller []byte
}

func (u *keptUse) Init(transport.TPM) error {
	if u.k.dead {
		return errors.New("the kept session has ended")
	}
	return nil
}

// CleanupFailure: the command failed; the session is not trusted again
// (flushed, so a TPM that still has it gets its slot back).
func (u *keptUse) CleanupFailure(t transport.TPM) error {
	if !u.k.dead {
		u.k.dead = true
		_, _ = tpm2.FlushContext{FlushHandle: u.k.handle}.Execute(t)
	}
	return nil
}

func (u *keptUse) NonceTPM() tpm2.TPM2BNonce { return tpm2.TPM2BNonce{Buffer: u.k.nonceTPM} }

func (u *keptUse) NewNonceCaller() error {
	u.nonceCaller = make([]byte, keptNonce)
	_, err := rand.Read(u.nonceCaller)
	return err
}

// key is the HMAC and encryption key: sessionKey || authValue.
func (u *keptUse) key() []byte {
	return append(append(make([]byte, 0, len(u.k.sessionKey)+len(u.auth)), u.k.sessionKey...), u.auth...)
}

func (u *keptUse) Authorize(cc tpm2.TPMCC, parms, addNonces []byte, names []tpm2.TPM2BName, _ int) (*tpm2.TPMSAuthCommand, error) {
	if u.k.dead {
		return nil, errors.New("the kept session has ended")
	}
	d := sha256.New()
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(cc)))
	for _, n := range names {
		d.Write(n.Buffer)
	}
	d.Write(parms)
	key := u.key()
	defer clear(key)
	m := sessionHMAC(key, d.Sum(nil), u.nonceCaller, u.k.nonceTPM, addNonces, u.attrs)
	return &tpm2.TPMSAuthCommand{Handle: u.k.handle, Nonce: tpm2.TPM2BNonce{Buffer: u.nonceCaller},
		Attributes: u.attrs, Authorization: tpm2.TPM2BData{Buffer: m}}, nil
}

func (u *keptUse) Validate(rc tpm2.TPMRC, cc tpm2.TPMCC, parms []byte, _ []tpm2.TPM2BName, _ int, a *tpm2.TPMSAuthResponse) error {
	u.k.nonceTPM = a.Nonce.Buffer
	if !a.Attributes.ContinueSession {
		u.k.dead = true // the TPM ended it
	}
	d := sha256.New()
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(rc)))
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(cc)))
	d.Write(parms)
	key := u.key()
	defer clear(key)
	if !hmac.Equal(sessionHMAC(key, d.Sum(nil), u.k.nonceTPM, u.nonceCaller, nil, a.Attributes), a.Authorization.Buffer) {
		u.k.dead = true
		return errors.New("incorrect response HMAC")
	}
	return nil
}

// sessionHMAC is Part 1 §19.6.5: HMAC(key, pHash || nonceNewer ||
// nonceOlder || nonces of other sessions || sessionAttributes).
func sessionHMAC(key, pHash, newer, older, add []byte, attrs tpm2.TPMASession) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(pHash)
	m.Write(newer)
	m.Write(older)
	m.Write(add)
	m.Write([]byte{sessionAttrs(attrs)})
	return m.Sum(nil)
}

func (u *keptUse) IsEncryption() bool { return u.attrs.Encrypt }
func (u *keptUse) IsDecryption() bool { return u.attrs.Decrypt }

// Encrypt encrypts a command parameter for the TPM (Part 1 §21.3: the key
// and IV from KDFa(sessionKey || authValue, "CFB", nonceCaller, nonceTPM)).
func (u *keptUse) Encrypt(p []byte) error {
	if !u.attrs.Decrypt {
		return nil
	}
	return u.cfb(p, u.nonceCaller, u.k.nonceTPM, false)
}

// Decrypt decrypts a response parameter (the nonces the other way round).
func (u *keptUse) Decrypt(p []byte) error {
	if !u.attrs.Encrypt {
		return nil
	}
	return u.cfb(p, u.k.nonceTPM, u.nonceCaller, true)
}

func (u *keptUse) cfb(p, newer, older []byte, decrypt bool) error {
	key := u.key()
	defer clear(key)
	kiv := tpm2.KDFa(crypto.SHA256, key, "CFB", newer, older, (16+16)*8)
	defer clear(kiv)
	b, err := aes.NewCipher(kiv[:16])
	if err != nil {
		return err
	}
	if decrypt {
		cipher.NewCFBDecrypter(b, kiv[16:]).XORKeyStream(p, p) //nolint:staticcheck // TPM parameter encryption is CFB
	} else {
		cipher.NewCFBEncrypter(b, kiv[16:]).XORKeyStream(p, p) //nolint:staticcheck
	}
	return nil
}

func (u *keptUse) Handle() tpm2.TPMHandle { return u.k.handle }

// CreateKept is Create (no authValue) over the kept session: one TPM
// command where Create starts a session for each, hand-marshalled (go-tpm's
// reflection was most of the module's time in it). For a value the TPM
// made a moment before (an ML-KEM shared secret) going back in at once;
// data crosses the bus encrypted.
//
// template is in its sized form: a caller making many keys of one kind
// marshals it once (tpm2.TPM2B keeps its bytes).
func (e *Engine) CreateKept(parent *Loadable, template *tpm2.TPM2BPublic, data []byte) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	ph, err := e.Handle(parent)
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, err
	}
	// TPMS_SENSITIVE_CREATE: empty userAuth, data; wiped once sent.
	sens := binary.BigEndian.AppendUint16(nil, uint16(4+len(data)))
	sens = appendTPM2B(append(sens, 0, 0), data)
	defer clear(sens)
	pub := appendTPM2B(nil, template.Bytes())
	var rsp *rawResponse
	keep := map[string]bool{parent.ID: true}
	// The session (and the salt key it needs loaded) first: started
	// inside, it would take the room made for the new object.
	// (Its keep set is its own: once started, the salt key may go.)
	if _, err := e.keptAuth(ph, nil, map[string]bool{parent.ID: true}, true, false); err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, err
	}
	err = e.withRoom(keep, func() error {
		pa, err := e.keptAuth(ph, parent.Auth, keep, true, false)
		if err != nil {
			return err
		}
		rsp, err = e.execRaw(createCmd(pa, sens, pub))
		return err
	})
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("create: %w", err)
	}
	// outPrivate, outPublic; the creation data, hash and ticket are not used.
	r := reader{b: rsp.params}
	priv, pubOut := r.tpm2b(), r.tpm2b()
	if r.bad {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("create: %w", errMalformed)
	}
	return tpm2.BytesAs2B[tpm2.TPMTPublic](bytes.Clone(pubOut)), tpm2.TPM2BPrivate{Buffer: bytes.Clone(priv)}, nil
}

// createCmd: TPM2_Create: @parentHandle; inSensitive
// TPM2B_SENSITIVE_CREATE (sens, with its size), inPublic TPM2B_PUBLIC
// (pub, with its size), outsideInfo (empty), creationPCR (none).
func createCmd(parent tpm2.AuthHandle, sens, pub []byte) rawCmd {
	return rawCmd{cc: tpm2.TPMCCCreate, auth: []tpm2.AuthHandle{parent}, params: [][]byte{sens, pub, {0, 0}, {0, 0, 0, 0}}}
}

// execSecretOut runs command cc with key's authorization and params, its
// response encrypted on the bus (secretOut): the one path of every command
// whose answer is a secret the token keeps.
func (e *Engine) execSecretOut(key *Loadable, cc tpm2.TPMCC, params ...[]byte) (*rawResponse, error) {
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	ka, extra, err := e.secretOut(h, key, map[string]bool{key.ID: true})
	if err != nil {
		return nil, err
	}
	return e.execRaw(rawCmd{cc: cc, auth: []tpm2.AuthHandle{ka}, extra: extra, params: params})
}

// RSADecryptSecret is RSARaw for a result that is a secret the token keeps
// in the TPM (a decapsulated or unwrapped key): the padded block comes
// back encrypted (secretOut: the kept session, beside the policy session
// of a key with a policy), where RSARaw's travels in the clear and would
// give the key to anyone reading the bus (OAEP and PKCS#1 padding come
// off without a key).
func (e *Engine) RSADecryptSecret(key *Loadable, c []byte) ([]byte, error) {
	// inScheme TPMT_RSA_DECRYPT: TPM_ALG_NULL; label: empty TPM2B_DATA.
	tail := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMAlgNull))
	rsp, err := e.execSecretOut(key, tpm2.TPMCCRSADecrypt, appendTPM2B(nil, c), append(tail, 0, 0))
	if err != nil {
		return nil, err
	}
	defer clear(rsp.params) // the block, decrypted, whatever the parse says
	r := reader{b: rsp.params}
	m := bytes.Clone(r.tpm2b())
	if err := r.end("TPM2_RSA_Decrypt response"); err != nil {
		clear(m)
		return nil, err
	}
	return m, nil
}
