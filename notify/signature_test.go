package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var sigNow = time.Unix(1_772_366_400, 0) // 2026-03-01T12:00:00Z

// refSig is the v1 value, computed here independently of the package.
func refSig(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSign(t *testing.T) {
	body := []byte(`{"user_id":"u"}`)
	got := Sign(testSecret, sigNow, body)
	want := "t=1772366400,v1=" + refSig(testSecret, "1772366400", body)
	if got != want {
		t.Errorf("Sign() = %q, want %q", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"user_id":"u","preview":"hi"}`)
	ts := strconv.FormatInt(sigNow.Unix(), 10)
	good := refSig(testSecret, ts, body)
	at := func(d time.Duration) string { // a genuine header signed at sigNow+d
		return Sign(testSecret, sigNow.Add(d), body)
	}
	tests := []struct {
		name      string
		secret    string
		header    string
		body      []byte
		tolerance time.Duration
		want      error // nil: accepted
	}{
		{name: "genuine", header: "t=" + ts + ",v1=" + good},
		{name: "from Sign", header: at(0)},
		{name: "uppercase hex", header: "t=" + ts + ",v1=" + strings.ToUpper(good)},
		{name: "spaces around parts", header: " t=" + ts + " , v1=" + good + " "},
		{name: "parts in any order", header: "v1=" + good + ",t=" + ts},
		{name: "unknown schemes ignored", header: "t=" + ts + ",v0=abc,v1=" + good + ",v2=zz"},
		{name: "one of several v1 (secret rotation)", header: "t=" + ts + ",v1=" + refSig("old secret", ts, body) + ",v1=" + good},
		{name: "4 min old within default tolerance", header: at(-4 * time.Minute)},
		{name: "4 min ahead within default tolerance", header: at(4 * time.Minute)},
		{name: "exactly at tolerance", header: at(-time.Minute), tolerance: time.Minute},

		{name: "tampered body", header: at(0), body: []byte(`{"user_id":"u","preview":"hi!"}`), want: ErrSignatureMismatch},
		{name: "empty body", header: at(0), body: []byte{}, want: ErrSignatureMismatch},
		{name: "wrong secret", secret: "not the secret", header: at(0), want: ErrSignatureMismatch},
		{name: "t changed", header: "t=" + strconv.FormatInt(sigNow.Unix()+1, 10) + ",v1=" + good, want: ErrSignatureMismatch},
		{name: "signature truncated", header: "t=" + ts + ",v1=" + good[:62], want: ErrSignatureMismatch},
		{name: "signature not hex", header: "t=" + ts + ",v1=zz" + good[2:], want: ErrSignatureMismatch},
		{name: "signature empty", header: "t=" + ts + ",v1=", want: ErrSignatureMismatch},
		{name: "only other schemes", header: "t=" + ts + ",v0=" + good, want: ErrMalformedSignature},
		{name: "old timestamp", header: at(-10 * time.Minute), want: ErrTimestampOutOfTolerance},
		{name: "future timestamp", header: at(10 * time.Minute), want: ErrTimestampOutOfTolerance},
		{name: "just past tolerance", header: at(-61 * time.Second), tolerance: time.Minute, want: ErrTimestampOutOfTolerance},
		{name: "ancient", header: Sign(testSecret, time.Unix(0, 0), body), want: ErrTimestampOutOfTolerance},
		{name: "far future", header: Sign(testSecret, time.Unix(999_999_999_999_999_999, 0), body), want: ErrTimestampOutOfTolerance},

		{name: "empty header", header: "", want: ErrMalformedSignature},
		{name: "no t", header: "v1=" + good, want: ErrMalformedSignature},
		{name: "no v1", header: "t=" + ts, want: ErrMalformedSignature},
		{name: "two t", header: "t=" + ts + ",t=" + ts + ",v1=" + good, want: ErrMalformedSignature},
		{name: "t not a number", header: "t=soon,v1=" + good, want: ErrMalformedSignature},
		{name: "t with sign", header: "t=+" + ts + ",v1=" + refSig(testSecret, "+"+ts, body), want: ErrMalformedSignature},
		{name: "t with leading zero", header: "t=0" + ts + ",v1=" + refSig(testSecret, "0"+ts, body), want: ErrMalformedSignature},
		{name: "t too long", header: "t=1234567890123456789,v1=" + good, want: ErrMalformedSignature},
		{name: "part without =", header: "t=" + ts + ",v1=" + good + ",junk", want: ErrMalformedSignature},
		{name: "trailing comma", header: "t=" + ts + ",v1=" + good + ",", want: ErrMalformedSignature},
		{name: "header too long", header: "t=" + ts + ",v1=" + good + ",x=" + strings.Repeat("a", 5000), want: ErrMalformedSignature},
		{name: "no secret", secret: "-", header: at(0), want: ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := tt.secret
			switch secret {
			case "":
				secret = testSecret
			case "-":
				secret = ""
			}
			b := tt.body
			if b == nil {
				b = body
			}
			err := VerifySignature(secret, tt.header, b, sigNow, tt.tolerance)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifySignature(%q) = %v, want nil", tt.header, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifySignature(%q) = %v, want %v", tt.header, err, tt.want)
			}
		})
	}
}

// FuzzVerifySignature feeds untrusted headers and bodies to
// VerifySignature. It must never panic, and must accept only a header that
// carries the HMAC of the body under the secret (as computed here, not by
// the package) with a t within the tolerance. A header made by Sign for the
// same body must always be accepted, and rejected for any other body.
func FuzzVerifySignature(f *testing.F) {
	const secret = "fuzz-secret"
	body := []byte(`{"user_id":"u","preview":"hello"}`)
	ts := strconv.FormatInt(sigNow.Unix(), 10)
	good := refSig(secret, ts, body)
	for _, h := range []string{
		"t=" + ts + ",v1=" + good,
		"v1=" + good + ",t=" + ts,
		"t=" + ts + ",v1=" + strings.ToUpper(good),
		"t=" + ts + ",v1=" + good[:63] + "0",
		"t=" + ts + ",v0=x,v1=" + good + ",v1=" + good,
		"t=" + strconv.FormatInt(sigNow.Unix()-3600, 10) + ",v1=" + refSig(secret, strconv.FormatInt(sigNow.Unix()-3600, 10), body),
		"t=,v1=",
		"t=0" + ts + ",v1=" + good,
		"t=-1,v1=00",
		"t=9223372036854775807,v1=" + good,
		",,,",
		"=",
		"",
	} {
		f.Add(h, body)
	}
	f.Add("t="+ts+",v1="+good, []byte{})
	f.Add("t="+ts+",v1="+good, []byte("\xff\x00."))

	f.Fuzz(func(t *testing.T, header string, b []byte) {
		err := VerifySignature(secret, header, b, sigNow, DefaultTolerance)
		if err == nil {
			if !acceptable(secret, header, b) {
				t.Fatalf("accepted a header not signed with the secret: %q body %q", header, b)
			}
			if VerifySignature("other-"+secret, header, b, sigNow, DefaultTolerance) == nil {
				t.Fatalf("header %q is accepted under another secret too", header)
			}
		} else if !errors.Is(err, ErrMalformedSignature) && !errors.Is(err, ErrSignatureMismatch) &&
			!errors.Is(err, ErrTimestampOutOfTolerance) {
			t.Fatalf("VerifySignature(%q) = %v, not one of the documented errors", header, err)
		}

		// What Sign makes verifies for its body only.
		signed := Sign(secret, sigNow, b)
		if err := VerifySignature(secret, signed, b, sigNow, DefaultTolerance); err != nil {
			t.Fatalf("VerifySignature(Sign(body)) = %v", err)
		}
		other := append([]byte("x"), b...)
		if err := VerifySignature(secret, signed, other, sigNow, DefaultTolerance); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("a signature of %q verified for %q: %v", b, other, err)
		}
	})
}

// acceptable reports whether header holds some t within the tolerance of
// sigNow and, lowercased, "v1=" followed by the HMAC under secret of that t
// and body.
func acceptable(secret, header string, body []byte) bool {
	lower := strings.ToLower(header)
	for part := range strings.SplitSeq(header, ",") {
		ts, ok := strings.CutPrefix(strings.TrimSpace(part), "t=")
		if !ok {
			continue
		}
		unix, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			continue
		}
		if d := sigNow.Unix() - unix; d > int64(DefaultTolerance/time.Second) || d < -int64(DefaultTolerance/time.Second) {
			continue
		}
		if strings.Contains(lower, "v1="+refSig(secret, ts, body)) {
			return true
		}
	}
	return false
}
