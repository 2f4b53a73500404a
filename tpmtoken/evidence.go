package tpmtoken

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
)

// PEM wraps the JSON form for mail and paste: a "TPM11 KEY ATTESTATION"
// block.
func (ev *Evidence) PEM() ([]byte, error) {
	j, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "TPM11 KEY ATTESTATION", Bytes: j}), nil
}

// ReadEvidence reads evidence in its JSON or PEM form.
func ReadEvidence(b []byte) (*Evidence, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && strings.HasPrefix(string(t), "-----BEGIN") {
		blk, _ := pem.Decode(t)
		if blk == nil || blk.Type != "TPM11 KEY ATTESTATION" {
			return nil, errors.New("not a TPM11 KEY ATTESTATION PEM block")
		}
		b = blk.Bytes
	}
	return ParseEvidence(b)
}
