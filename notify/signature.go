package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook request.
const (
	SignatureHeader = "Waggle-Signature"
	DeliveryHeader  = "Waggle-Delivery"
	UserAgent       = "waggle-notify/1"
)

// DefaultTolerance is the usual tolerance for VerifySignature: how far the
// signing time may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// maxSignatureHeader bounds the Waggle-Signature header VerifySignature
// looks at: it is untrusted input, and a real one is about 80 bytes (a few
// hundred with several v1 values).
const maxSignatureHeader = 4096

// Errors of VerifySignature. A request failing with any of them must be
// rejected.
var (
	// ErrNoSecret: the receiver has no secret configured.
	ErrNoSecret = errors.New("notify: no webhook secret")
	// ErrMalformedSignature: the header is not t=<unix seconds>,v1=<hex>...
	ErrMalformedSignature = errors.New("notify: malformed signature header")
	// ErrSignatureMismatch: no v1 value is the HMAC of this body and t
	// under the secret (tampered body, wrong secret or forged header).
	ErrSignatureMismatch = errors.New("notify: signature does not match")
	// ErrTimestampOutOfTolerance: the signature is genuine but t is too far
	// from now (a replay, or a badly wrong clock).
	ErrTimestampOutOfTolerance = errors.New("notify: signature timestamp outside tolerance")
)

// Sign returns the Waggle-Signature header value for body signed at t with
// secret: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a webhook request's Waggle-Signature header
// against its raw body: one of its v1 values must be the HMAC-SHA256 under
// secret of "<t>.<body>" (compared in constant time), and t must be within
// tolerance of now, either way. A tolerance of zero or less means
// DefaultTolerance. The error is nil or wraps one of ErrNoSecret,
// ErrMalformedSignature, ErrSignatureMismatch and ErrTimestampOutOfTolerance.
//
// The signature is checked before the timestamp, so a forged header learns
// nothing about the tolerance. Verification does not stop replays within
// the tolerance: drop repeated Waggle-Delivery ids for that.
func VerifySignature(secret string, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return ErrNoSecret
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(header) > maxSignatureHeader {
		return fmt.Errorf("%w: header too long", ErrMalformedSignature)
	}
	var (
		ts      string
		haveTS  bool
		sigs    []string
		haveSig bool
	)
	for part := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: part without '='", ErrMalformedSignature)
		}
		switch key {
		case "t":
			if haveTS {
				return fmt.Errorf("%w: more than one t", ErrMalformedSignature)
			}
			ts, haveTS = value, true
		case "v1":
			sigs, haveSig = append(sigs, value), true
		}
	}
	if !haveTS {
		return fmt.Errorf("%w: no t", ErrMalformedSignature)
	}
	if !haveSig {
		return fmt.Errorf("%w: no v1 signature", ErrMalformedSignature)
	}
	unix, ok := parseUnix(ts)
	if !ok {
		return fmt.Errorf("%w: t is not a Unix time in seconds", ErrMalformedSignature)
	}

	want := mac(secret, ts, body)
	matched := false
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err != nil {
			continue
		}
		// Check every value, not only up to the first match, so timing
		// does not tell which one matched.
		if hmac.Equal(got, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}

	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return ErrTimestampOutOfTolerance
	}
	return nil
}

// parseUnix accepts only the canonical decimal form Sign writes: digits, no
// sign, no leading zero, at most 18 digits (no overflow). The MAC covers t
// as written, so a non-canonical t could only come with a MAC made over it;
// rejecting it keeps one spelling per time.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 18 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
