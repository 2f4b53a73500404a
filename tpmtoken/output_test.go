package tpmtoken_test

import (
	"github.com/tpm11/tpm11/ck"
	"github.com/tpm11/tpm11/tpmtoken"
)

// call emulates what the C layer does for a call with variable-length
// output (module/output.go): a length query (query) or a buffer of c bytes,
// answered from OutputLen before run. It returns the bytes, the length the
// caller would see in *pulLen, and the error.
func call(l *tpmtoken.Library, h uint64, kind tpmtoken.OpKind, p tpmtoken.Part, inLen, c int, query bool,
	run func(tpmtoken.Dest) ([]byte, error)) ([]byte, int, error) {
	n, exact, err := l.OutputLen(h, kind, p, inLen)
	if err != nil {
		return nil, 0, err
	}
	if query {
		return nil, n, nil
	}
	if exact && c < n {
		return nil, n, ck.TooSmall(n)
	}
	out, err := run(tpmtoken.Dest{Cap: c})
	if err != nil {
		var needed int
		if e, ok := err.(*ck.Error); ok {
			needed = int(e.Needed)
		}
		return nil, needed, err
	}
	return out, len(out), nil
}

func sign(l *tpmtoken.Library, h uint64, data []byte, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpSign, tpmtoken.Single, len(data), c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.Sign(h, data, d) })
}

func signFinal(l *tpmtoken.Library, h uint64, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpSign, tpmtoken.Final, 0, c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.SignFinal(h, d) })
}

func encrypt(l *tpmtoken.Library, h uint64, in []byte, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpEncrypt, tpmtoken.Single, len(in), c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.Encrypt(h, in, d) })
}

func decrypt(l *tpmtoken.Library, h uint64, in []byte, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpDecrypt, tpmtoken.Single, len(in), c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.Decrypt(h, in, d) })
}

func encryptUpdate(l *tpmtoken.Library, h uint64, in []byte, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpEncrypt, tpmtoken.Update, len(in), c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.EncryptUpdate(h, in, d) })
}

func decryptUpdate(l *tpmtoken.Library, h uint64, in []byte, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpDecrypt, tpmtoken.Update, len(in), c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.DecryptUpdate(h, in, d) })
}

func encryptFinal(l *tpmtoken.Library, h uint64, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpEncrypt, tpmtoken.Final, 0, c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.EncryptFinal(h, d) })
}

func decryptFinal(l *tpmtoken.Library, h uint64, c int, query bool) ([]byte, int, error) {
	return call(l, h, tpmtoken.OpDecrypt, tpmtoken.Final, 0, c, query, func(d tpmtoken.Dest) ([]byte, error) { return l.DecryptFinal(h, d) })
}

func random(l *tpmtoken.Library, h uint64, n int) ([]byte, error) {
	return l.GenerateRandom(h, n, tpmtoken.Dest{Cap: n})
}
