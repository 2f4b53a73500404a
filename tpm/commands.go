package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Create makes a new object under parent from template with the given
// authValue and returns its wrapped blobs. The private part is encrypted by
// the parent: it never exists in the clear outside the TPM.
// data, if not nil, is the sensitive data of a sealed object.
func (e *Engine) Create(parent *Loadable, template tpm2.TPMTPublic, authValue, data []byte) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	return e.create(parent, tpm2.New2B(template), authValue, data, "create")
}

// create is TPM2_Create of a public area already in its sized form (the
// PQC templates go-tpm cannot marshal come that way); what names the
// command in errors.
func (e *Engine) create(parent *Loadable, template tpm2.TPM2BPublic, authValue, data []byte, what string) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	ph, err := e.Handle(parent)
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, err
	}
	// TPM2_Create builds the object in a transient slot: it needs room.
	var rsp *tpm2.CreateResponse
	keep := map[string]bool{parent.ID: true}
	if e.Salt != nil {
		// The salt key (secret, below) is loaded before room is made: were
		// it loaded inside, it would take the room, and every Create after
		// another key's use failed once (TPM_RC_OBJECT_MEMORY) and ran
		// again with a new salted session.
		keep[e.Salt.ID] = true
		if _, err := e.handle(e.Salt, keep); err != nil {
			return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, err
		}
	}
	err = e.withRoom(keep, func() (err error) {
		// The sensitive part (an authValue, sealed data, a key) is the
		// first parameter: encrypted on the bus.
		pa, err := e.secret(ph, parent.Auth, keep, encryptIn)
		if err != nil {
			return err
		}
		rsp, err = tpm2.Create{
			ParentHandle: pa,
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				UserAuth: tpm2.TPM2BAuth{Buffer: authValue},
				Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
			}},
			InPublic: template,
		}.Execute(e.tr())
		return err
	})
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%s: %w", what, err)
	}
	return rsp.OutPublic, rsp.OutPrivate, nil
}

// ChangeAuth proves obj.Auth to the TPM and returns obj's private blob
// re-wrapped with newAuth. Called with newAuth == obj.Auth it is a PIN check
// that costs one command and counts a failure against dictionary-attack
// protection, like any wrong authValue.
func (e *Engine) ChangeAuth(obj *Loadable, newAuth []byte) (tpm2.TPM2BPrivate, error) {
	h, err := e.Handle(obj)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	keep := map[string]bool{obj.ID: true}
	ph, err := e.handle(obj.Parent, keep)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	oa, err := e.secret(h, obj.Auth, keep, encryptIn)
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	rsp, err := tpm2.ObjectChangeAuth{
		ObjectHandle: oa,
		ParentHandle: ph,
		NewAuth:      tpm2.TPM2BAuth{Buffer: newAuth},
	}.Execute(e.tr())
	if err != nil {
		return tpm2.TPM2BPrivate{}, err
	}
	return rsp.OutPrivate, nil
}

// Unseal proves obj.Auth and returns the sealed data. The sealed object is
// dropped afterwards (Drop): it is needed once per login, not kept loaded
// or saved, and flushed when its room is needed rather than on the way to
// the caller.
func (e *Engine) Unseal(obj *Loadable) ([]byte, error) {
	h, err := e.Handle(obj)
	if err != nil {
		return nil, err
	}
	defer e.Drop(obj.ID) // flushed when its room is needed, not now
	ia, err := e.secret(h, obj.Auth, map[string]bool{obj.ID: true}, encryptOut)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Unseal{ItemHandle: ia}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	return rsp.OutData.Buffer, nil
}

// SigScheme is the scheme TPM2_Sign signs in: one whose only detail is a
// hash (TPM_ALG_ECDSA, _RSASSA, _RSAPSS) and that hash, or TPM_ALG_NULL:
// the key's own scheme.
type SigScheme struct {
	Alg, Hash tpm2.TPMAlgID
}

func (s SigScheme) check() error {
	switch s.Alg {
	case tpm2.TPMAlgNull, tpm2.TPMAlgECDSA, tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		return nil
	}
	return fmt.Errorf("signing scheme %#x is not one this token signs with", uint16(s.Alg))
}

// inScheme is s as go-tpm marshals it (a TPMT_SIG_SCHEME).
func (s SigScheme) inScheme() tpm2.TPMTSigScheme {
	if s.Alg == tpm2.TPMAlgNull {
		return tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}
	}
	return tpm2.TPMTSigScheme{Scheme: s.Alg, Details: tpm2.NewTPMUSigScheme(s.Alg, &tpm2.TPMSSchemeHash{HashAlg: s.Hash})}
}

// Sign signs digest with key in scheme.
func (e *Engine) Sign(key *Loadable, digest []byte, scheme SigScheme) (*tpm2.TPMTSignature, error) {
	if err := scheme.check(); err != nil {
		return nil, err
	}
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	if key.Policy == nil {
		return e.sign(h.Handle, key.Auth, digest, scheme)
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  e.keyAuth(h, key, map[string]bool{key.ID: true}),
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   scheme.inScheme(),
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
	}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	return &rsp.Signature, nil
}

// RSARaw computes c^d mod n with key (TPM2_RSA_Decrypt with the NULL scheme);
// the module does the padding.
func (e *Engine) RSARaw(key *Loadable, c []byte) ([]byte, error) {
	h, err := e.Handle(key)
	if err != nil {
		return nil, err
	}
	if key.Policy == nil {
		return e.rsaDecryptRaw(h.Handle, key.Auth, c)
	}
	rsp, err := tpm2.RSADecrypt{
		KeyHandle:  e.keyAuth(h, key, map[string]bool{key.ID: true}),
		CipherText: tpm2.TPM2BPublicKeyRSA{Buffer: c},
		InScheme:   tpm2.TPMTRSADecrypt{Scheme: tpm2.TPMAlgNull},
	}.Execute(e.tr())
	if err != nil {
		return nil, err
	}
	return rsp.Message.Buffer, nil
}

// Random fills n bytes from the TPM's RNG.
func (e *Engine) Random(n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		ask := min(n-len(out), 32)
		rsp, err := tpm2.GetRandom{BytesRequested: uint16(ask)}.Execute(e.tr())
		if err != nil {
			return nil, err
		}
		if len(rsp.RandomBytes.Buffer) == 0 {
			return nil, errors.New("TPM returned no random bytes")
		}
		out = append(out, rsp.RandomBytes.Buffer...)
	}
	return out[:n], nil
}

// Info is what the TPM says about itself.
type Info struct {
	Manufacturer                 string // four ASCII characters, e.g. "IBM "
	VendorString                 string
	FirmwareMajor, FirmwareMinor uint8
}

// State reads the TPM's identity and its dictionary-attack state: one
// TPM2_GetCapability asking from TPM_PT_MANUFACTURER through
// TPM_PT_MAX_AUTH_FAIL, which a TPM that lists properties across groups
// answers at once; the reference implementation (swtpm) stops at the end of
// the fixed group, and is asked the variable one in a second command.
func (e *Engine) State() (Info, DAState, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: uint32(tpm2.TPMPTMaxAuthFail-tpm2.TPMPTManufacturer) + 1,
	}.Execute(e.tr())
	if err != nil {
		return Info{}, DAState{}, err
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return Info{}, DAState{}, err
	}
	info := infoOf(props.TPMProperty)
	var st DAState
	var last tpm2.TPMPT
	for _, p := range props.TPMProperty {
		st.set(p)
		last = max(last, p.Property)
	}
	if last < tpm2.TPMPTMaxAuthFail {
		if st, err = e.DAState(); err != nil {
			return Info{}, DAState{}, err
		}
	}
	return info, st, nil
}

// Properties reads the TPM's manufacturer, vendor string and firmware version.
func (e *Engine) Properties() (Info, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: 8,
	}.Execute(e.tr())
	if err != nil {
		return Info{}, err
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return Info{}, err
	}
	return infoOf(props.TPMProperty), nil
}

func infoOf(props []tpm2.TPMSTaggedProperty) Info {
	var info Info
	be4 := func(v uint32) string {
		return string([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	for _, p := range props {
		switch p.Property {
		case tpm2.TPMPTManufacturer:
			info.Manufacturer = be4(p.Value)
		case tpm2.TPMPTVendorString1, tpm2.TPMPTVendorString2, tpm2.TPMPTVendorString3, tpm2.TPMPTVendorString4:
			info.VendorString += be4(p.Value)
		case tpm2.TPMPTFirmwareVersion1:
			info.FirmwareMajor, info.FirmwareMinor = uint8(p.Value>>16), uint8(p.Value)
		}
	}
	info.VendorString = trimNUL(info.VendorString)
	info.Manufacturer = trimNUL(info.Manufacturer)
	return info
}

func trimNUL(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == 0 || c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return string(b)
}
