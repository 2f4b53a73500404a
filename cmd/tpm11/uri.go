package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// p11uri is an RFC 7512 pkcs11: URI: the token and object attributes
// tpm11 prints and accepts.
type p11uri struct {
	token, serial, manufacturer, model string
	slotID                             string
	object, typ                        string
	id                                 []byte
	hasID                              bool
	pinValue, pinSource                string
	labelOrSerial                      string // --token given as a plain string
}

// String prints the URI: attributes in RFC 7512's order, the ID as %XX
// bytes, anything else percent-encoded where the RFC asks for it.
func (u *p11uri) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+pctEncode(v))
		}
	}
	add("token", u.token)
	add("manufacturer", u.manufacturer)
	add("serial", u.serial)
	add("model", u.model)
	add("slot-id", u.slotID)
	if u.hasID || len(u.id) > 0 {
		var b strings.Builder
		for _, c := range u.id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		parts = append(parts, "id="+b.String())
	}
	add("object", u.object)
	add("type", u.typ)
	return "pkcs11:" + strings.Join(parts, ";")
}

// pctEncode keeps RFC 7512's unreserved and path-allowed characters.
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~:[]@!$'()*+,=&", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func pctDecode(s string) ([]byte, error) {
	var out bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return nil, fmt.Errorf("bad %%-escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("bad %%-escape in %q", s)
		}
		out.WriteByte(byte(v))
		i += 2
	}
	return out.Bytes(), nil
}

// parseURI reads a pkcs11: URI. Attributes tpm11 cannot honour are errors,
// not silently ignored: a URI that selects nothing must not select all.
func parseURI(s string) (*p11uri, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("%q is not a pkcs11: URI", s)
	}
	if len(s) > 4096 {
		return nil, fmt.Errorf("pkcs11: URI longer than 4096 bytes")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &p11uri{}
	for _, kv := range strings.Split(path, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("pkcs11: URI attribute %q has no value", kv)
		}
		val, err := pctDecode(v)
		if err != nil {
			return nil, err
		}
		switch k {
		case "token":
			u.token = string(val)
		case "serial":
			u.serial = string(val)
		case "manufacturer":
			u.manufacturer = string(val)
		case "model":
			u.model = string(val)
		case "slot-id":
			if _, err := strconv.ParseUint(string(val), 10, 64); err != nil {
				return nil, fmt.Errorf("pkcs11: URI slot-id %q is not a number", val)
			}
			u.slotID = string(val)
		case "object":
			u.object = string(val)
		case "id":
			u.id, u.hasID = val, true
		case "type":
			switch string(val) {
			case "private", "public", "cert", "secret-key", "data":
				u.typ = string(val)
			default:
				return nil, fmt.Errorf("pkcs11: URI type %q (private, public, cert, secret-key or data)", val)
			}
		case "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer":
			// about the module or slot: there is one of each
		default:
			return nil, fmt.Errorf("pkcs11: URI attribute %q is not one tpm11 knows", k)
		}
	}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		val, err := pctDecode(v)
		if err != nil {
			return nil, err
		}
		switch k {
		case "pin-value":
			u.pinValue = string(val)
		case "pin-source":
			u.pinSource = strings.TrimPrefix(string(val), "file:")
		case "module-name", "module-path":
		default:
			return nil, fmt.Errorf("pkcs11: URI query attribute %q is not one tpm11 knows", k)
		}
	}
	return u, nil
}

func (u *p11uri) namesToken() bool {
	return u.token != "" || u.serial != "" || u.manufacturer != "" || u.model != "" || u.slotID != "" || u.labelOrSerial != ""
}

func (u *p11uri) matchesToken(t token) bool {
	if u.labelOrSerial != "" {
		return t.Label == u.labelOrSerial || t.Serial == u.labelOrSerial
	}
	return (u.token == "" || u.token == t.Label) && (u.serial == "" || u.serial == t.Serial) &&
		(u.manufacturer == "" || u.manufacturer == t.Manufacturer) && (u.model == "" || u.model == t.Model) &&
		(u.slotID == "" || u.slotID == strconv.FormatUint(t.Slot, 10))
}
