package sim_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"io"
	"math/big"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/tpm"
	"github.com/tpm11/tpm11/tpm/sim"
)

// A served simulator is what the module reaches (simulator:unix:PATH): a
// TPM that says it is simulated, whose keys sign as Go's crypto verifies,
// shared by its clients one connection at a time, keeping its seed in the
// store so a key made before a restart of the server loads again after it.
// A client that sends garbage loses its connection, not the server.
func TestServedSimulator(t *testing.T) {
	store := t.TempDir()
	sock := filepath.Join(t.TempDir(), "sim.sock")
	serve := func() (stop func()) {
		s, err := sim.NewServer(store)
		require.NoError(t, err)
		ln, err := net.Listen("unix", sock)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		return func() {
			require.NoError(t, ln.Close())
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(time.Minute): // a hang, not a measurement
				t.Fatal("Serve did not return after its listener closed")
			}
			require.NoError(t, s.Close())
		}
	}
	stop := serve()

	d, err := tpm.OpenWith("simulator:unix:"+sock, tpm.Options{})
	require.NoError(t, err)
	require.True(t, d.Simulated, "a served simulator is taken for one")
	e := tpm.NewEngine(d, d.ObjectSlots)
	srk := &tpm.Loadable{ID: "srk", Public: tpm.SRKTemplate()}
	pub, priv, err := e.Create(srk, tpm.ECCKeyTemplate(tpm2.TPMECCNistP256), nil, nil)
	require.NoError(t, err)
	key := &tpm.Loadable{ID: "k", Parent: srk, Public: pub, Private: priv}
	verify := func(e *tpm.Engine) {
		digest := sha256.Sum256([]byte("served"))
		sig, err := e.Sign(key, digest[:], tpm.SigScheme{Alg: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256})
		require.NoError(t, err)
		ec, err := sig.Signature.ECDSA()
		require.NoError(t, err)
		p, err := key.Public.Contents()
		require.NoError(t, err)
		parms, _ := p.Parameters.ECCDetail()
		point, _ := p.Unique.ECC()
		pk, err := tpm2.ECDSAPub(parms, point)
		require.NoError(t, err)
		require.True(t, ecdsa.Verify(pk, digest[:], new(big.Int).SetBytes(ec.SignatureR.Buffer), new(big.Int).SetBytes(ec.SignatureS.Buffer)))
	}
	verify(e)
	e.FlushAll()
	require.NoError(t, d.Release())

	// Garbage: a header whose size is below a header's. The connection
	// is closed (EOF); the server serves the next client.
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	_, err = c.Write([]byte{0x80, 0x01, 0, 0, 0, 2, 0, 0, 1, 0x7b})
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	_, err = c.Read(make([]byte, 16))
	require.ErrorIs(t, err, io.EOF)
	c.Close()

	e = tpm.NewEngine(d, d.ObjectSlots)
	verify(e)
	e.FlushAll()
	require.NoError(t, d.Close())
	stop()

	// The same store served again: the same SRK, so the key loads.
	stop = serve()
	defer stop()
	d, err = tpm.OpenWith("simulator:unix:"+sock, tpm.Options{})
	require.NoError(t, err)
	defer d.Close()
	e = tpm.NewEngine(d, d.ObjectSlots)
	verify(e)
	e.FlushAll()
}

// A served simulator's address is unix:PATH or tcp:HOST:PORT.
func TestBadSimulatorSpec(t *testing.T) {
	_, err := tpm.OpenWith("simulator:pipe:x", tpm.Options{})
	require.ErrorContains(t, err, "simulator:unix:PATH")
}

// The PKCS#11 module links no simulator: neither this package nor
// go-tpm-tools' (C code and libcrypto) is among its dependencies.
func TestModuleLinksNoSimulator(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/tpm11/tpm11/module").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/tpm11/tpm11/tpm", "the list is the module's")
	for _, p := range deps {
		require.False(t, strings.HasSuffix(p, "/simulator") || strings.Contains(p, "/simulator/") || p == "github.com/tpm11/tpm11/tpm/sim",
			"the module depends on %s", p)
	}
}
