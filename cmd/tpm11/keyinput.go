package main

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"software.sslmate.com/src/go-pkcs12"
)

// maxInputFile bounds every file tpm11 reads (keys, certificates, bundles):
// real ones are a few kilobytes; /dev/zero is not one.
const maxInputFile = 1 << 20

// readInput reads a bounded input file.
func readInput(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a %s", path, what)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxInputFile {
		return nil, fmt.Errorf("%s is larger than %d KiB: not a %s", path, maxInputFile>>10, what)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// keyFile is what a key file holds: one private key, certificates.
type keyFile struct {
	name  string
	key   crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
	certs []*x509.Certificate
	pass  []byte
	// passFile is --passphrase-file.
	passFile string
}

func (k *keyFile) passphrase() ([]byte, error) {
	if k.pass == nil {
		p, err := passphrase(k.passFile, k.name)
		if err != nil {
			return nil, err
		}
		k.pass = p
	}
	return k.pass, nil
}

// readKeyFile reads a private key (and certificates) from PEM (PKCS#8,
// encrypted PKCS#8, PKCS#1, SEC1, legacy encrypted PEM, OpenSSH), PKCS#12
// or DER.
func readKeyFile(path, passFile string) (*keyFile, error) {
	data, err := readInput(path, "key file")
	if err != nil {
		return nil, err
	}
	kf := &keyFile{name: path, passFile: passFile}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		err = kf.readPEM(data)
	} else {
		err = kf.readDER(data)
	}
	if err != nil {
		return nil, err
	}
	if kf.key == nil {
		return nil, fmt.Errorf("%s holds no private key (PEM PKCS#8/PKCS#1/SEC1, encrypted PKCS#8, OpenSSH, PKCS#12 or DER)", path)
	}
	return kf, nil
}

func (kf *keyFile) setKey(k any) error {
	if kf.key != nil {
		return fmt.Errorf("%s holds more than one private key: split it", kf.name)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if len(k.Primes) != 2 {
			return fmt.Errorf("%s: a multi-prime RSA key cannot go into a TPM", kf.name)
		}
		kf.key = k
	case *ecdsa.PrivateKey:
		kf.key = k
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return fmt.Errorf("%s: an Ed25519 key cannot go into a TPM 2.0 (it has no Ed25519): use an EC P-256 or RSA key", kf.name)
	case *ecdh.PrivateKey:
		return fmt.Errorf("%s: an X25519/X448 key cannot go into a TPM 2.0", kf.name)
	default:
		return fmt.Errorf("%s: %T keys cannot go into a TPM (RSA and EC keys can)", kf.name, k)
	}
	return nil
}

func (kf *keyFile) readPEM(data []byte) error {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			key, err = kf.encryptedPKCS8(b.Bytes)
		case "RSA PRIVATE KEY", "EC PRIVATE KEY":
			der := b.Bytes
			//lint:ignore SA1019 legacy encrypted PEM is insecure, but keys exist in it and are read once here
			if x509.IsEncryptedPEMBlock(b) { //nolint:staticcheck
				pass, perr := kf.passphrase()
				if perr != nil {
					return perr
				}
				//lint:ignore SA1019 see above
				if der, err = x509.DecryptPEMBlock(b, pass); err != nil { //nolint:staticcheck
					return fmt.Errorf("%s: %w", kf.name, errWrongPassphrase)
				}
			}
			if b.Type == "RSA PRIVATE KEY" {
				key, err = x509.ParsePKCS1PrivateKey(der)
			} else {
				key, err = x509.ParseECPrivateKey(der)
			}
		case "OPENSSH PRIVATE KEY":
			key, err = kf.openSSH(pem.EncodeToMemory(b))
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return fmt.Errorf("%s: certificate: %w", kf.name, err)
			}
			kf.certs = append(kf.certs, c)
			continue
		default:
			continue // public keys, parameters, requests: not for import
		}
		if err != nil {
			var np needPassphrase
			if errors.As(err, &np) {
				return err
			}
			if errors.Is(err, errWrongPassphrase) {
				return fmt.Errorf("%s: %w", kf.name, err)
			}
			return fmt.Errorf("%s: %s: %w", kf.name, b.Type, err)
		}
		if err := kf.setKey(key); err != nil {
			return err
		}
	}
}

func (kf *keyFile) encryptedPKCS8(der []byte) (any, error) {
	pass, err := kf.passphrase()
	if err != nil {
		return nil, err
	}
	plain, err := decryptPKCS8(der, pass)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		return nil, errWrongPassphrase // what decrypted was not a key
	}
	return key, nil
}

func (kf *keyFile) openSSH(pemBytes []byte) (any, error) {
	key, err := ssh.ParseRawPrivateKey(pemBytes)
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return key, err
	}
	pass, err := kf.passphrase()
	if err != nil {
		return nil, err
	}
	key, err = ssh.ParseRawPrivateKeyWithPassphrase(pemBytes, pass)
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, errWrongPassphrase
	}
	return key, err
}

func (kf *keyFile) readDER(data []byte) error {
	if key, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return kf.setKey(key)
	}
	if key, err := x509.ParsePKCS1PrivateKey(data); err == nil {
		return kf.setKey(key)
	}
	if key, err := x509.ParseECPrivateKey(data); err == nil {
		return kf.setKey(key)
	}
	if isEncryptedPKCS8(data) {
		key, err := kf.encryptedPKCS8(data)
		if err != nil {
			return fmt.Errorf("%s: %w", kf.name, err)
		}
		return kf.setKey(key)
	}
	// PKCS#12: first with no password (many are made so), then asked for.
	key, cert, cas, err := pkcs12.DecodeChain(data, "")
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		pass, perr := kf.passphrase()
		if perr != nil {
			return perr
		}
		key, cert, cas, err = pkcs12.DecodeChain(data, string(pass))
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return fmt.Errorf("%s: %w", kf.name, errWrongPassphrase)
		}
	}
	if err != nil && strings.Contains(err.Error(), "certificate missing") {
		return fmt.Errorf("%s: a PKCS#12 file without a certificate is not read: extract the key (openssl pkcs12 -in %s -nocerts -nodes) and import that", kf.name, kf.name)
	}
	if err != nil {
		if _, ok := err.(pkcs12.NotImplementedError); ok {
			return fmt.Errorf("%s: PKCS#12: %w", kf.name, err)
		}
		return fmt.Errorf("%s is not a private key file (PEM, DER, PKCS#12 or OpenSSH)", kf.name)
	}
	if cert != nil {
		kf.certs = append(kf.certs, cert)
	}
	kf.certs = append(kf.certs, cas...)
	return kf.setKey(key)
}

// readCertFile reads one certificate, PEM or DER.
func readCertFile(path string) (*x509.Certificate, error) {
	data, err := readInput(path, "certificate")
	if err != nil {
		return nil, err
	}
	der := data
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		der = nil
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				der = b.Bytes
				break
			}
		}
		if der == nil {
			return nil, fmt.Errorf("%s holds no PEM CERTIFICATE", path)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s is not an X.509 certificate: %w", path, err)
	}
	return c, nil
}
