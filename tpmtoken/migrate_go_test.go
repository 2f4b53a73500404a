package tpmtoken_test

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/internal/swtpmtest"
	"github.com/tpm11/tpm11/tpmtoken"
	"github.com/tpm11/tpm11/tpmtoken/tpm2pkcs11"
	"github.com/tpm11/tpm11/tpmtoken/tpm2pkcs11db"
)

// tpm2-pkcs11 migration from Go (testdata/migrate-test.sh drives the same
// through the CLI and OpenSSH): tpm2_ptool (Debian's tpm2-pkcs11, through
// tpm2-abrmd on a private D-Bus session bus) makes a store on a private
// swtpm; the public keys are read through tpm2-pkcs11's own module by
// pkcs11-tool BEFORE the migration; after it, Go's crypto verifies
// signatures made by the migrated keys against those public keys.

// p11tools starts a private D-Bus bus and tpm2-abrmd on the swtpm at sock,
// and returns the environment for tpm2_ptool, tpm2-tools and
// libtpm2_pkcs11.so, and a function that stops tpm2-abrmd (swtpm serves one
// connection at a time: tpm11 connects only after it). A missing tool fails
// the test: CI installs them (.ci/run), and a skipped test cannot fail.
func p11tools(t *testing.T, sock, store string) (env []string, stop func()) {
	t.Helper()
	abrmd := "/usr/sbin/tpm2-abrmd"
	if p, err := exec.LookPath("tpm2-abrmd"); err == nil {
		abrmd = p
	}
	for _, tool := range []string{"tpm2_ptool", "dbus-daemon", "pkcs11-tool", "tpm2_getcap", abrmd} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (apt-get install libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus opensc tpm2-tools)", tool)
		}
	}
	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1")
	bus.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := bus.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, bus.Start())
	t.Cleanup(func() { _ = bus.Process.Kill(); _ = bus.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "dbus-daemon prints its address")
	name := fmt.Sprintf("com.intel.tss2.Tabrmd.tpm11gotest%d", os.Getpid())
	tcti := "tabrmd:bus_type=session,bus_name=" + name
	env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+strings.TrimSpace(addr),
		"TPM2TOOLS_TCTI="+tcti, "TPM2_PKCS11_TCTI="+tcti, "TPM2_PKCS11_STORE="+store, "TPM2_PKCS11_LOG_LEVEL=0")

	logPath := filepath.Join(t.TempDir(), "abrmd.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	rm := exec.Command(abrmd, "--session", "--allow-root", "--tcti=swtpm:path="+sock, "--dbus-name="+name)
	rm.Env, rm.Stdout, rm.Stderr = env, logf, logf
	rm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, rm.Start())
	exited := make(chan struct{})
	go func() { _ = rm.Wait(); close(exited) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = rm.Process.Signal(syscall.SIGTERM)
			<-exited
		}
	}
	t.Cleanup(stop)
	// Ready when a tpm2-tools command gets through it to the TPM; the
	// bound only catches a hang.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(hangBound)
	for {
		c := exec.Command("tpm2_getcap", "properties-fixed")
		c.Env = env
		if c.Run() == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("tpm2-abrmd exited: %s", logText())
		case <-deadline:
			t.Fatalf("tpm2-abrmd not serving after %v: %s", hangBound, logText())
		case <-tick.C:
		}
	}
	return env, stop
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	c := exec.Command(name, args...)
	c.Dir, c.Env = dir, env
	out, err := c.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return out
}

func tpm2pkcs11Module(t *testing.T) string {
	t.Helper()
	p := "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
	if _, err := os.Stat(p); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/*/pkcs11/libtpm2_pkcs11.so")
	if len(m) == 0 {
		t.Fatal("libtpm2_pkcs11.so not found (Debian package libtpm2-pkcs11-1)")
	}
	return m[0]
}

// privateWithID is the private key object with CKA_ID id.
func privateWithID(t *testing.T, l *tpmtoken.Library, h uint64, id []byte) uint64 {
	t.Helper()
	require.NoError(t, l.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_ID, id}, {ck.CKA_CLASS, ulong(ck.CKO_PRIVATE_KEY)}}))
	found, err := l.FindObjects(h, 10)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsFinal(h))
	require.Len(t, found, 1, "one private key with ID %x", id)
	return found[0]
}

func allObjects(t *testing.T, l *tpmtoken.Library, h uint64) []uint64 {
	t.Helper()
	require.NoError(t, l.FindObjectsInit(h, nil))
	found, err := l.FindObjects(h, 100)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsFinal(h))
	return found
}

func TestMigrateTPM2PKCS11KeysSignForGo(t *testing.T) {
	srv := swtpmtest.NewServer(t)
	sock := strings.TrimPrefix(srv.Spec, "swtpm:unix:")
	work := t.TempDir()
	p11 := filepath.Join(work, "p11")
	require.NoError(t, os.Mkdir(p11, 0o700))
	env, stopRM := p11tools(t, sock, p11)

	// tpm2-pkcs11's token, as its users make it (tpm2_ptool --id is a
	// string: "0a01" is the CKA_ID 30613031).
	ptool := func(args ...string) { runIn(t, work, env, "tpm2_ptool", args...) }
	ptool("init", "--path="+p11)
	ptool("addtoken", "--pid=1", "--sopin=sopin123", "--userpin=userpin1", "--label=old", "--path="+p11)
	ptool("addkey", "--algorithm=rsa2048", "--label=old", "--userpin=userpin1", "--key-label=rsakey", "--id=0a01", "--path="+p11)
	ptool("addkey", "--algorithm=ecc256", "--label=old", "--userpin=userpin1", "--key-label=eckey", "--id=0a02", "--path="+p11)
	ptool("addkey", "--algorithm=aes128", "--label=old", "--userpin=userpin1", "--key-label=aeskey", "--id=0a03", "--path="+p11)
	// The public keys, read through tpm2-pkcs11's own module.
	mod := tpm2pkcs11Module(t)
	pubs := map[string]any{}
	for _, id := range []string{"30613031", "30613032"} {
		der := filepath.Join(work, id+".der")
		runIn(t, work, env, "pkcs11-tool", "--module", mod, "--read-object", "--type", "pubkey", "--id", id, "-o", der)
		b, err := os.ReadFile(der)
		require.NoError(t, err)
		pk, err := x509.ParsePKIXPublicKey(b)
		require.NoError(t, err, "tpm2-pkcs11's public key %s", id)
		pubs[id] = pk
	}
	require.IsType(t, &rsa.PublicKey{}, pubs["30613031"])
	require.IsType(t, &ecdsa.PublicKey{}, pubs["30613032"])
	// A certificate for the RSA key, which a CA (Go's x509) issued.
	caCert, caKey := testAttestationCA(t)
	certDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "rsakey"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}, caCert, pubs["30613031"], caKey)
	require.NoError(t, err)
	certFile := filepath.Join(work, "rsa.crt")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o600))
	ptool("addcert", "--label=old", "--key-label=rsakey", "--path="+p11, certFile)
	stopRM()
	sqlite := filepath.Join(p11, "tpm2_pkcs11.sqlite3")
	before, err := os.ReadFile(sqlite)
	require.NoError(t, err)

	store := t.TempDir()
	l := open(t, srv.Spec, store)
	defer l.Close()
	h := provision(t, l)
	st, err := tpm2pkcs11db.Open(p11)
	require.NoError(t, err)
	src, err := st.Token("old")
	require.NoError(t, err)

	// The spec's return values before anything reaches the TPM.
	ro, err := l.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	_, err = l.MigrateTPM2PKCS11(ro, src, []byte("userpin1"))
	require.Equal(t, ck.CKR_SESSION_READ_ONLY, rv(err))
	require.NoError(t, l.CloseSession(ro))
	_, err = l.MigrateTPM2PKCS11(h+1000, src, []byte("userpin1"))
	require.Equal(t, ck.CKR_SESSION_HANDLE_INVALID, rv(err))
	require.NoError(t, l.Logout(h))
	_, err = l.MigrateTPM2PKCS11(h, src, []byte("userpin1"))
	require.Equal(t, ck.CKR_USER_NOT_LOGGED_IN, rv(err))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	// Stores tpm2_ptool makes with options tpm11 does not take over
	// (init --transient-parent, --primary-auth; a token without user PIN).
	for name, change := range map[string]func(p *tpm2pkcs11.Primary){
		"transient primary": func(p *tpm2pkcs11.Primary) { p.Handle = 0 },
		"primary password":  func(p *tpm2pkcs11.Primary) { p.Auth = "secret" },
		"damaged primary":   func(p *tpm2pkcs11.Primary) { p.Public = p.Public[:3] },
	} {
		tok := *src
		p := *src.Primary
		change(&p)
		tok.Primary = &p
		_, err = l.MigrateTPM2PKCS11(h, &tok, []byte("userpin1"))
		require.Equal(t, ck.CKR_ARGUMENTS_BAD, rv(err), name)
	}
	noUser := *src
	noUser.UserPub = nil
	_, err = l.MigrateTPM2PKCS11(h, &noUser, []byte("userpin1"))
	require.Equal(t, ck.CKR_USER_PIN_NOT_INITIALIZED, rv(err))
	require.Empty(t, allObjects(t, l, h))

	// A wrong tpm2-pkcs11 PIN makes nothing.
	_, err = l.MigrateTPM2PKCS11(h, src, []byte("wrongpin1"))
	require.Equal(t, ck.CKR_PIN_INCORRECT, rv(err))
	require.Contains(t, err.Error(), "nothing was changed")
	require.Empty(t, allObjects(t, l, h), "a wrong PIN made objects")

	m, err := l.MigrateTPM2PKCS11(h, src, []byte("userpin1"))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{`private key "rsakey" id 30613031`, `private key "eckey" id 30613032`}, m.Keys)
	require.Equal(t, []string{`certificate "rsakey" id 30613031`}, m.Certificates)
	require.Len(t, m.Skipped, 1)
	require.Contains(t, m.Skipped[0], `secret key "aeskey" id 30613033`)
	after, err := os.ReadFile(sqlite)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(before), sha256.Sum256(after), "migration changed the tpm2-pkcs11 store")

	msg := []byte("signed after the move")
	digest := sha256.Sum256(msg)
	rsaKey := privateWithID(t, l, h, []byte("0a01"))
	sig := signWith(t, l, h, rsaKey, ck.CKM_SHA256_RSA_PKCS, msg)
	require.NoError(t, rsa.VerifyPKCS1v15(pubs["30613031"].(*rsa.PublicKey), crypto.SHA256, digest[:], sig),
		"the migrated RSA key's signature does not verify with tpm2-pkcs11's public key")
	ecKey := privateWithID(t, l, h, []byte("0a02"))
	sig = signWith(t, l, h, ecKey, ck.CKM_ECDSA_SHA256, msg)
	require.Len(t, sig, 64)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	require.True(t, ecdsa.Verify(pubs["30613032"].(*ecdsa.PublicKey), digest[:], r, s),
		"the migrated EC key's signature does not verify with tpm2-pkcs11's public key")
	// The public halves carry the same keys.
	require.Equal(t, pubs["30613031"], spki(t, l, h, rsaKey))
	require.True(t, pubs["30613032"].(*ecdsa.PublicKey).Equal(spki(t, l, h, ecKey)))
	require.NoError(t, l.FindObjectsInit(h, []tpmtoken.Attr{{ck.CKA_CLASS, ulong(ck.CKO_CERTIFICATE)}, {ck.CKA_ID, []byte("0a01")}}))
	certs, err := l.FindObjects(h, 10)
	require.NoError(t, err)
	require.NoError(t, l.FindObjectsFinal(h))
	require.Len(t, certs, 1)
	val, err := l.GetAttributeValue(h, certs[0], []ck.AttributeType{ck.CKA_VALUE})
	require.NoError(t, err)
	require.Equal(t, certDER, val[0].Value, "the certificate differs")
	n := len(allObjects(t, l, h))
	require.Equal(t, 5, n, "two key pairs and the certificate")

	// Again: the IDs are taken, nothing is made twice.
	_, err = l.MigrateTPM2PKCS11(h, src, []byte("userpin1"))
	require.Equal(t, ck.CKR_TEMPLATE_INCONSISTENT, rv(err))
	require.Len(t, allObjects(t, l, h), n)

	// The keys need the user: after logout and login (their authValues are
	// unlocked again from the store) they still sign.
	require.NoError(t, l.Logout(h))
	require.NoError(t, l.Login(h, ck.CKU_USER, []byte("userpin")))
	sig = signWith(t, l, h, rsaKey, ck.CKM_SHA256_RSA_PKCS, msg)
	require.NoError(t, rsa.VerifyPKCS1v15(pubs["30613031"].(*rsa.PublicKey), crypto.SHA256, digest[:], sig))
	// And in another library on the same store (another process), which
	// finds tpm2-pkcs11's primary from the store.
	l.Close()
	l2 := open(t, srv.Spec, store)
	defer l2.Close()
	h2, err := l2.OpenSession(0, ck.CKF_SERIAL_SESSION)
	require.NoError(t, err)
	require.NoError(t, l2.Login(h2, ck.CKU_USER, []byte("userpin")))
	sig = signWith(t, l2, h2, privateWithID(t, l2, h2, []byte("0a02")), ck.CKM_ECDSA_SHA256, msg)
	require.True(t, ecdsa.Verify(pubs["30613032"].(*ecdsa.PublicKey), digest[:],
		new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))
}
