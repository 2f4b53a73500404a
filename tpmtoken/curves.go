package tpmtoken

import (
	"crypto/elliptic"

	"github.com/tpm11/tpm11/tpmtoken/mech"
)

// Curve is a named curve the token knows; the tool and other callers get
// curve facts here, from the one table in mech.
type Curve = mech.Curve

// CurveNamed returns the curve the CLI calls name ("p256"), nil if unknown.
func CurveNamed(name string) *Curve { return mech.CurveNamed(name) }

// CurveOfGo returns the token's curve for a Go curve, nil if unknown.
func CurveOfGo(c elliptic.Curve) *Curve { return mech.CurveOfGo(c) }

// CurveOf returns the curve that CKA_EC_PARAMS names, nil if unknown.
func CurveOf(params []byte) *Curve { return mech.CurveOf(params) }
