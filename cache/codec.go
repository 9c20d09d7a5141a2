package cache

import "encoding/json"

// Codec turns cached values into the bytes stored in the shared Redis tier and
// back. The memory tier stores values as they are and never uses the codec.
type Codec[V any] interface {
	Marshal(V) ([]byte, error)
	Unmarshal([]byte) (V, error)
}

// JSONCodec is a Codec using encoding/json. For a pointer type V, Unmarshal
// allocates a fresh value, so instances never share a decoded value.
type JSONCodec[V any] struct{}

// Marshal encodes v as JSON.
func (JSONCodec[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON into a new V.
func (JSONCodec[V]) Unmarshal(b []byte) (V, error) {
	var v V
	err := json.Unmarshal(b, &v)
	return v, err
}
