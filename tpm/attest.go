package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Key attestation: the TPM's endorsement key (EK), whose certificate the
// manufacturer (or swtpm_setup's local CA) wrote into NV, and an
// attestation key (AK) in the same TPM, a restricted signing key that
// certifies other keys (TPM2_Certify). The AK is tied to the EK by
// credential activation: a verifier encrypts a secret to the EK for the
// AK's name (TPM2_MakeCredential, done in software), and only the TPM
// holding both keys gets it back (TPM2_ActivateCredential).

// NV indices of EK certificates (TCG EK Credential Profile 2.0, 2.2.1.4).
const (
	EKCertRSA2048 = tpm2.TPMHandle(0x01c00002)
	EKCertECCP256 = tpm2.TPMHandle(0x01c0000a)
	EKCertECCP384 = tpm2.TPMHandle(0x01c00016)
)

// Persistent handles where provisioning (swtpm_setup, most platforms) keeps
// the EKs: the RSA and ECC P-256 EKs of the low range (TCG Provisioning
// Guidance, 7.8) and swtpm's ECC P-384 EK of the high range.
const (
	EKRSAHandle     = tpm2.TPMHandle(0x81010001)
	EKECCP256Handle = tpm2.TPMHandle(0x81010002)
	EKECCP384Handle = tpm2.TPMHandle(0x81010016)
)

// EKRSA is the RSA-2048 endorsement key of the TCG's default template
// (EK Credential Profile, template L-1), whose certificate is at
// EKCertRSA2048: re-created in the endorsement hierarchy when it is not
// kept at EKRSAHandle.
func EKRSA() *Loadable {
	return &Loadable{ID: "ek:rsa", Public: tpm2.New2B(tpm2.RSAEKTemplate),
		Hierarchy: tpm2.TPMRHEndorsement, Persistent: EKRSAHandle}
}

// EKECCP256 is the ECC P-256 endorsement key of template L-2, whose
// certificate is at EKCertECCP256.
func EKECCP256() *Loadable {
	return &Loadable{ID: "ek:p256", Public: tpm2.New2B(tpm2.ECCEKTemplate),
		Hierarchy: tpm2.TPMRHEndorsement, Persistent: EKECCP256Handle}
}

// ekP384Policy is the authPolicy of the high-range EK templates with
// SHA-384 (EK Credential Profile 2.5, B.4: PolicyOR of PolicySecret of
// the endorsement hierarchy and PolicyAuthorizeNV): the admin role's. The
// user role, all TPM2_ActivateCredential asks of the EK, is its empty
// authValue (userWithAuth set), unlike the low range whose userWithAuth
// is clear and whose policy is PolicySecret alone.
var ekP384Policy = []byte{
	0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
	0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
	0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
}

// EKECCP384 is the ECC P-384 endorsement key of the high range (template
// H-3: SHA-384 names, AES-256), whose certificate is at EKCertECCP384;
// swtpm_setup keeps it at EKECCP384Handle.
func EKECCP384() *Loadable {
	t := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA384,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, AdminWithPolicy: true, Restricted: true, Decrypt: true},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: ekP384Policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgAES,
				KeyBits: tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
				Mode:    tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB)},
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID: tpm2.TPMECCNistP384,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
	return &Loadable{ID: "ek:p384", Public: tpm2.New2B(t), Hierarchy: tpm2.TPMRHEndorsement, Persistent: EKECCP384Handle}
}

// EndorsementKey is the EK whose certificate the TPM holds, the first of
// RSA-2048, ECC P-256 (low range) and ECC P-384 (high range), with its
// certificate as read from NV (ErrNoNV if the TPM has none of them).
func (e *Engine) EndorsementKey() (*Loadable, []byte, error) {
	for _, c := range []struct {
		nv tpm2.TPMHandle
		ek func() *Loadable
	}{{EKCertRSA2048, EKRSA}, {EKCertECCP256, EKECCP256}, {EKCertECCP384, EKECCP384}} {
		cert, err := e.ReadNV(c.nv)
		if errors.Is(err, ErrNoNV) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return c.ek(), cert, nil
	}
	return nil, nil, ErrNoNV
}

// Attestation key types: "rsa", an RSA-2048 key signing with RSASSA
// (PKCS#1 v1.5) and SHA-256, what step-ca's device-attest-01 verifies
// (its go-attestation fork takes RSA attestation keys only); "ecc", an
// ECC P-256 key signing with ECDSA and SHA-256.
const (
	AKRSA = "rsa"
	AKECC = "ecc"
)

// AKTemplate is the attestation key of type typ (AKRSA or AKECC): a
// restricted signing key made in the TPM, fixed to it, never duplicable.
// A restricted key signs only digests the TPM computed itself (no digest
// it is handed that starts like a TPM attestation), so what it signs is
// true.
func AKTemplate(typ string) tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	}
	if typ == AKRSA {
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: tpm2.TPMECCNistP256,
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KDF: tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// AK is the attestation key of type typ (AKRSA or AKECC): a primary key
// of the endorsement hierarchy, so the same key in every process (and
// until the TPM's endorsement seed changes) with no blob to keep.
func AK(typ string) *Loadable {
	id := "ak" // the ECC AK's cache ID since before RSA AKs
	if typ == AKRSA {
		id = "ak:rsa"
	}
	return &Loadable{ID: id, Public: tpm2.New2B(AKTemplate(typ)), Hierarchy: tpm2.TPMRHEndorsement}
}

// ReadNV reads NV index idx whole, authorized by the index itself (EK
// certificate indices are readable with its empty authValue), else by the
// owner. ErrNoNV if the index is not defined.
func (e *Engine) ReadNV(idx tpm2.TPMHandle) ([]byte, error) {
	pub, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(e.tr())
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, ErrNoNV
		}
		return nil, err
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	nh := tpm2.NamedHandle{Handle: idx, Name: pub.NVName}
	var authH any = tpm2.AuthHandle{Handle: idx, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !nv.Attributes.AuthRead && nv.Attributes.OwnerRead {
		authH = tpm2.TPMRHOwner
	}
	var out []byte
	for off := 0; off < int(nv.DataSize); {
		n := min(int(nv.DataSize)-off, 512)
		var rsp *tpm2.NVReadResponse
		switch a := authH.(type) {
		case tpm2.AuthHandle:
			rsp, err = tpm2.NVRead{AuthHandle: a, NVIndex: nh, Size: uint16(n), Offset: uint16(off)}.Execute(e.tr())
		case tpm2.TPMHandle:
			rsp, err = tpm2.NVRead{AuthHandle: a, NVIndex: nh, Size: uint16(n), Offset: uint16(off)}.Execute(e.tr())
		}
		if err != nil {
			return nil, fmt.Errorf("read NV %#x: %w", uint32(idx), err)
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, fmt.Errorf("read NV %#x: no data", uint32(idx))
		}
		out = append(out, rsp.Data.Buffer...)
		off += len(rsp.Data.Buffer)
	}
	return out, nil
}

// ErrNoNV is ReadNV's error for an NV index the TPM does not have.
var ErrNoNV = errors.New("NV index not defined")

// Public returns obj's public area as the TPM has it: a primary key's
// unique field is filled in by the TPM, so its template is not enough.
func (e *Engine) Public(obj *Loadable) (tpm2.TPMTPublic, error) {
	if obj.Parent != nil {
		p, err := obj.Public.Contents()
		if err != nil {
			return tpm2.TPMTPublic{}, err
		}
		return *p, nil
	}
	if _, err := e.Handle(obj); err != nil {
		return tpm2.TPMTPublic{}, err
	}
	return e.slots[obj.ID].pub, nil
}

// AKCreation is what a verifier checks about an attestation key before it
// trusts it (go-attestation's AttestationParameters): its public area, the
// creation data of its TPM2_CreatePrimary and TPM2_CertifyCreation of those
// by the key itself, which shows the key is the TPM's own restricted key.
type AKCreation struct {
	Public, CreateData, CreateAttestation, CreateSignature []byte
}

// CertifyAKCreation makes ak (a primary key) to get its creation data and
// ticket and has it certify its own creation (TPM2_CertifyCreation). The
// primary is the same key the cache uses (same template, same seed): it
// is kept as the cache's if the cache had none, else flushed.
func (e *Engine) CertifyAKCreation(ak *Loadable) (*AKCreation, error) {
	if ak.Parent != nil {
		return nil, errors.New("the attestation key must be a primary key")
	}
	var rsp *tpm2.CreatePrimaryResponse
	err := e.withRoom(map[string]bool{}, func() (err error) {
		rsp, err = tpm2.CreatePrimary{PrimaryHandle: ak.hierarchy(), InPublic: ak.Public}.Execute(e.tr())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create attestation key: %w", err)
	}
	// The primary is the key the cache would make: it becomes the cache's
	// when the cache has none (an RSA primary costs seconds on hardware),
	// else it goes.
	keep := false
	if _, ok := e.slots[ak.ID]; !ok {
		if pub, err := rsp.OutPublic.Contents(); err == nil {
			e.slots[ak.ID] = &slot{obj: ak, pub: *pub, handle: rsp.ObjectHandle, name: rsp.Name, loaded: true, lastUse: e.clock}
			keep = true
		}
	}
	if !keep {
		defer func() { _, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(e.tr()) }()
	}
	h := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	cc, err := tpm2.CertifyCreation{
		SignHandle:     auth(h, nil),
		ObjectHandle:   h,
		CreationHash:   rsp.CreationHash,
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		CreationTicket: rsp.CreationTicket,
	}.Execute(e.tr())
	if err != nil {
		return nil, fmt.Errorf("certify creation: %w", err)
	}
	return &AKCreation{
		Public:            rsp.OutPublic.Bytes(),
		CreateData:        rsp.CreationData.Bytes(),
		CreateAttestation: cc.CertifyInfo.Bytes(),
		CreateSignature:   tpm2.Marshal(cc.Signature),
	}, nil
}

// Certify has ak sign a TPMS_ATTEST saying that the TPM holds key, with
// key's name (so its public area, attributes included) and qualifying
// data extra (a verifier's nonce). Returns the TPMS_ATTEST and the
// TPMT_SIGNATURE, marshalled.
func (e *Engine) Certify(key, ak *Loadable, extra []byte) (attest, sig []byte, err error) {
	// The key first (its parents may go once it is loaded), then the AK
	// keeping the key: two slots, whatever the TPM has.
	kh, err := e.handle(key, map[string]bool{})
	if err != nil {
		return nil, nil, err
	}
	ah, err := e.handle(ak, map[string]bool{key.ID: true})
	if err != nil {
		return nil, nil, err
	}
	if !e.Loaded(key.ID) {
		return nil, nil, errors.New("certify: the key was evicted")
	}
	// TPM2_Certify needs the object's ADMIN role: its authValue (no key
	// of the token has adminWithPolicy), even for a key used by policy.
	rsp, err := tpm2.Certify{
		ObjectHandle:   auth(kh, key.Auth),
		SignHandle:     auth(ah, ak.Auth),
		QualifyingData: tpm2.TPM2BData{Buffer: extra},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(e.tr())
	if err != nil {
		return nil, nil, fmt.Errorf("certify: %w", err)
	}
	return rsp.CertifyInfo.Bytes(), tpm2.Marshal(rsp.Signature), nil
}

// ActivateCredential recovers the secret a verifier encrypted to ek for
// ak's name (credential, the TPM2B_ID_OBJECT's contents, and secret, the
// TPM2B_ENCRYPTED_SECRET's): the TPM releases it only if it holds both
// keys. The EK takes the user role: a low-range EK (userWithAuth clear)
// by its policy, PolicySecret of the endorsement hierarchy (whose
// authValue is empty on every TPM the token runs on), in a session of the
// EK's name algorithm; a high-range EK (userWithAuth set) by its empty
// authValue.
func (e *Engine) ActivateCredential(ak, ek *Loadable, credential, secret []byte) ([]byte, error) {
	keep := map[string]bool{ak.ID: true, ek.ID: true}
	ah, err := e.handle(ak, keep)
	if err != nil {
		return nil, err
	}
	eh, err := e.handle(ek, keep)
	if err != nil {
		return nil, err
	}
	pub, err := ek.Public.Contents()
	if err != nil {
		return nil, err
	}
	ekAuth := tpm2.Policy(pub.NameAlg, 16, tpm2.PolicyCallback(endorsementSecret))
	if pub.ObjectAttributes.UserWithAuth {
		ekAuth = tpm2.PasswordAuth(nil)
	}
	// A persistent EK takes an object slot while the command runs.
	var rsp *tpm2.ActivateCredentialResponse
	err = e.withRoom(keep, func() (err error) {
		rsp, err = tpm2.ActivateCredential{
			ActivateHandle: auth(ah, ak.Auth),
			KeyHandle:      tpm2.AuthHandle{Handle: eh.Handle, Name: eh.Name, Auth: ekAuth},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credential},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secret},
		}.Execute(e.tr())
		return err
	})
	if err != nil {
		// A challenge for another TPM's EK or AK, or bytes that are no
		// challenge: the TPM refuses it (TPM_RC_INTEGRITY, _VALUE, _SIZE;
		// libtpms answers TPM_RC_FAILURE to a secret another key
		// encrypted, and goes on working). Only a TPM that then fails a
		// plain command too is a device failure.
		var rc tpm2.TPMRC
		if errors.As(err, &rc) {
			if _, perr := (tpm2.ReadClock{}).Execute(e.tr()); perr == nil {
				return nil, fmt.Errorf("%w: %w", ErrNotOurCredential, err)
			}
		}
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	return rsp.CertInfo.Buffer, nil
}

// ErrNotOurCredential is ActivateCredential's error for a challenge this
// TPM cannot open: made for another TPM's EK or AK, or not a challenge.
var ErrNotOurCredential = errors.New("the TPM refused the credential: it was not made for this TPM's EK and attestation key")

// endorsementSecret satisfies the EK's policy: TPM2_PolicySecret with the
// endorsement hierarchy's (empty) authValue.
func endorsementSecret(t transport.TPM, session tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.TPMRHEndorsement,
		PolicySession: session,
		NonceTPM:      nonce,
	}.Execute(t)
	return err
}
