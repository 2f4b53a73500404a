//go:build !linux

package tpmtoken

import "runtime"

// yieldCPU: see yield_linux.go.
func yieldCPU() { runtime.Gosched() }
