package claims

import (
	"bytes"
	"encoding/json"
	"time"
)

// decisionJSON is a Decision as the shared Redis tier stores it.
type decisionJSON struct {
	Subject   string         `json:"sub,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	Scopes    []string       `json:"scopes,omitempty"`
	Audience  []string       `json:"aud,omitempty"`
	Issuer    string         `json:"iss,omitempty"`
	ExpiresAt time.Time      `json:"exp,omitzero"`
	NotBefore time.Time      `json:"nbf,omitzero"`
	IssuedAt  time.Time      `json:"iat,omitzero"`
	ACR       string         `json:"acr,omitempty"`
	AuthTime  time.Time      `json:"auth_time,omitzero"`
	Claims    map[string]any `json:"claims,omitempty"`
	Source    string         `json:"source,omitempty"`
}

// MarshalJSON writes d for the shared cache tier.
func (d *Decision) MarshalJSON() ([]byte, error) {
	f := d.Fields()
	return json.Marshal(decisionJSON{Subject: f.Subject, ClientID: f.ClientID, Scopes: f.Scopes, Audience: f.Audience,
		Issuer: f.Issuer, ExpiresAt: f.ExpiresAt, NotBefore: f.NotBefore, IssuedAt: f.IssuedAt, ACR: f.ACR,
		AuthTime: f.AuthTime, Claims: f.Claims, Source: f.Source})
}

// UnmarshalJSON reads a Decision written by MarshalJSON. Numbers in the
// claims come back as json.Number, as the strict reader gives them.
func (d *Decision) UnmarshalJSON(b []byte) error {
	f, err := decodeFields(b)
	if err == nil {
		d.fill(f)
	}
	return err
}

// DecodeDecision is UnmarshalJSON for a new Decision that shares the
// strings in in.
func DecodeDecision(b []byte, in *Interned) (*Decision, error) {
	f, err := decodeFields(b)
	if err != nil {
		return nil, err
	}
	f.Interned = in
	return f.Build(), nil
}

func decodeFields(b []byte) (DecisionFields, error) {
	var j decisionJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return DecisionFields{}, err
	}
	return DecisionFields{Subject: j.Subject, ClientID: j.ClientID, Scopes: j.Scopes, Audience: j.Audience,
		Issuer: j.Issuer, ExpiresAt: j.ExpiresAt, NotBefore: j.NotBefore, IssuedAt: j.IssuedAt, ACR: j.ACR,
		AuthTime: j.AuthTime, Claims: j.Claims, Source: j.Source}, nil
}
