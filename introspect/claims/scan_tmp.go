package claims

// TEMPORARY stand-in for the fast scanner (being written on perf-keys).

import (
	"bytes"
	"encoding/json"
	"errors"
)

func ScanObject(b []byte, fn func(name, value []byte) error) error {
	if _, err := ParseStrictObject(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := t.(string)
		if !ok {
			return errors.New("bad name")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if err := fn([]byte(name), bytes.TrimSpace(raw)); err != nil {
			return err
		}
	}
	return nil
}

func StringValue(raw []byte) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", errors.New("not a string")
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
