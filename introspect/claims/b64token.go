package claims

// CheckB64Token enforces the b64token grammar of RFC 6750 §2.1 on a token
// of at most limit bytes: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
// "/" ) *"=". It is the one syntax rule for a bearer token, whether a caller
// sent it or the gateway is about to send its own in an Authorization
// header, where the grammar also rules out header injection.
func CheckB64Token(t string, limit int) (string, *Error) {
	if t == "" {
		return "", InvalidRequest("empty_token", "the token is empty")
	}
	if len(t) > limit {
		return "", InvalidRequest("token_too_long", "the token is too long")
	}
	i := 0
	for ; i < len(t); i++ {
		c := t[i]
		if !isB64TokenChar(c) {
			break
		}
	}
	if i == 0 {
		return "", InvalidRequest("bad_syntax", "the token is not a valid b64token")
	}
	for ; i < len(t); i++ {
		if t[i] != '=' {
			if t[i] == ' ' || t[i] == '\t' {
				return "", InvalidRequest("bad_syntax", "the Authorization header carries more than one token")
			}
			return "", InvalidRequest("bad_syntax", "the token contains characters outside the b64token set")
		}
	}
	return t, nil
}

func isB64TokenChar(c byte) bool { return b64TokenChars[c] }

// b64TokenChars marks the bytes a b64token is made of (before its
// padding): a table lookup per byte, on every request's token.
var b64TokenChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()
