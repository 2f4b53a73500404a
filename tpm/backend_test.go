package tpm_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tpm11/tpm11/tpm"
)

// A program that does not import package sim (the PKCS#11 module) has no
// simulator of its own: "simulator" says how to reach a served one.
func TestNoSimulatorInProcess(t *testing.T) {
	_, err := tpm.OpenWith("simulator", tpm.Options{StateDir: t.TempDir()})
	require.ErrorIs(t, err, tpm.ErrNoSimulator)
	require.ErrorContains(t, err, "simulator:unix:PATH")
}
