package ck

import (
	"errors"
	"fmt"
)

// Error carries the CK_RV a failure must be reported as, the cause for logs,
// and for CKR_BUFFER_TOO_SMALL the size the caller needs.
type Error struct {
	RV     RV
	Cause  error
	Needed uint64
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %v", RVName(e.RV), e.Cause)
	}
	return RVName(e.RV)
}

func (e *Error) Unwrap() error { return e.Cause }

// E returns an error that reports as rv.
func E(rv RV) error { return &Error{RV: rv} }

// Wrap returns an error that reports as rv and keeps cause for the log.
func Wrap(rv RV, cause error) error { return &Error{RV: rv, Cause: cause} }

// Errorf is Wrap with a formatted cause.
func Errorf(rv RV, format string, args ...any) error {
	return &Error{RV: rv, Cause: fmt.Errorf(format, args...)}
}

// TooSmall reports CKR_BUFFER_TOO_SMALL with the size the caller needs.
func TooSmall(needed int) error { return &Error{RV: CKR_BUFFER_TOO_SMALL, Needed: uint64(needed)} }

// ToRV is the one place an error becomes a CK_RV. An error that does not
// carry a CK_RV is a bug or an unclassified failure: CKR_GENERAL_ERROR.
func ToRV(err error) RV {
	if err == nil {
		return CKR_OK
	}
	if e, ok := err.(*Error); ok {
		return e.RV // most errors: without errors.As, whose target escapes (an allocation per call)
	}
	var e *Error
	if errors.As(err, &e) {
		return e.RV
	}
	return CKR_GENERAL_ERROR
}

// RVName is for logs and test output.
func RVName(rv RV) string {
	if n, ok := rvNames[rv]; ok {
		return n
	}
	return fmt.Sprintf("CKR_0x%X", rv)
}
