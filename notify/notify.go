// Package notify sends push notifications to users with no live session.
//
// When the chat service stores a message and a recipient has no session on
// any edge, it hands a Notification to a Notifier. Notify never blocks the
// send path: a Notifier queues, drops or discards, but never waits.
//
// Three Notifiers are provided:
//
//   - Webhook POSTs each notification as signed JSON to one URL, with
//     retries; an operator's service behind it turns it into APNs/FCM pushes
//     (or anything else). Direct APNs/FCM notifiers would implement the same
//     interface.
//   - Nop discards everything, for deployments without push.
//   - Func adapts a function, for tests and in-process wiring.
//
// Push is best-effort. A notification may be dropped (full queue, receiver
// down for longer than the retries, shutdown) or, rarely, delivered twice
// (a receiver that processed a request but whose answer was lost sees the
// same Waggle-Delivery id again). Messages themselves are never at risk:
// they are stored before anyone is notified and every device gets them by
// sync when it next connects.
//
// # Webhook requests
//
// Every notification is one HTTP POST to WebhookConfig.URL whose body is the
// Notification as JSON (see its field tags), with these headers:
//
//	Content-Type: application/json
//	User-Agent: waggle-notify/1
//	Waggle-Delivery: 3f0c9a4e-5b7d-4c41-9a51-0e4f8d3b2a11
//	Waggle-Signature: t=1700000000,v1=<64 lowercase hex digits>
//
// Waggle-Delivery identifies the notification: it is the same on every retry
// of it and different for every other one, so a receiver can drop repeats.
//
// Waggle-Signature (the scheme Stripe uses) holds t, the Unix time in seconds
// when this attempt was signed, and v1, the lowercase hex HMAC-SHA256, keyed
// with WebhookConfig.Secret, of the signed payload
//
//	<t> "." <raw request body>
//
// Each attempt is signed anew, so a retry after a long backoff still carries
// a fresh t. The header may carry several v1 values (for example while a
// secret is rotated); one matching value is enough. Unknown keys are ignored,
// so new schemes can be added beside v1.
//
// # Verifying a request (receivers)
//
// A receiver in Go calls VerifySignature with the raw body, before decoding
// it; in other languages:
//
//  1. Read the raw body, unparsed (re-encoded JSON does not verify).
//  2. Split Waggle-Signature on ","; split each part on the first "=". Take
//     the one t and every v1. Reject the request if t or v1 is missing.
//  3. Compute HMAC-SHA256 with the shared secret over t + "." + body, and
//     hex-encode it.
//  4. Compare it with each v1 in constant time (hmac.compare_digest,
//     crypto.timingSafeEqual, ...). Reject if none matches.
//  5. Reject if t is further than your tolerance (5 minutes is the usual
//     choice) from your clock, so a captured request cannot be replayed
//     later.
//  6. Drop a Waggle-Delivery id you have already processed (remember ids at
//     least as long as your tolerance), so replays within the tolerance and
//     retries are handled once.
//
// Answer 2xx once the notification is accepted. Answer 429 or 5xx to have it
// retried with exponential backoff; a Retry-After header (seconds or an HTTP
// date) is honoured, and one asking for more than WebhookConfig.MaxBackoff
// (30 s by default) makes Waggle give up instead. Any other answer, including
// 3xx (redirects are not followed) and 4xx, makes Waggle give up on that
// notification at once. Waggle also retries when the connection fails or the
// answer takes longer than WebhookConfig.Timeout (10 s by default).
package notify

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Notification is what a user with no live session is told about a new
// message. Its JSON form is the body of a webhook request.
type Notification struct {
	// UserID is the recipient.
	UserID string `json:"user_id"`
	// ConversationID and ConversationTitle name the conversation; the title
	// is empty for a 1:1 conversation without one (show SenderName).
	ConversationID    string `json:"conversation_id"`
	ConversationTitle string `json:"conversation_title"`
	// MessageID and Seq identify the message: Seq is its place in the
	// conversation's event sequence, so an app can open the conversation at
	// it.
	MessageID string `json:"message_id"`
	Seq       uint64 `json:"seq"`
	// SenderUserID and SenderName are who sent it.
	SenderUserID string `json:"sender_user_id"`
	SenderName   string `json:"sender_name"`
	// Preview is the start of a text message (see Preview), or
	// "[<custom type>]" for a custom message.
	Preview string `json:"preview"`
	// Badge is the recipient's total unread count over all conversations,
	// including this message: the app icon badge.
	Badge uint64 `json:"badge"`
	// Time is when the message was stored (server time). Webhook.Notify
	// replaces a zero Time with the time Notify was called.
	Time time.Time `json:"time"`
}

// PreviewChars is how many characters (Unicode code points) of a text
// message Preview keeps.
const PreviewChars = 100

// Preview returns the Notification.Preview of a message: "[<customType>]"
// when customType is not empty, otherwise the first PreviewChars characters
// of text. It never splits a character; invalid UTF-8 is replaced with U+FFFD.
func Preview(text, customType string) string {
	if customType != "" {
		return "[" + customType + "]"
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	n := 0
	for i := range text {
		if n == PreviewChars {
			return text[:i]
		}
		n++
	}
	return text
}

// Notifier sends notifications to users who are offline.
type Notifier interface {
	// Notify hands n over for delivery and returns at once: it must never
	// block, since it is called on the send path. Delivery is best-effort
	// and its outcome is not reported to the caller.
	Notify(n Notification)
}

// Nop is a Notifier that discards every notification: push is off.
type Nop struct{}

// Notify discards n.
func (Nop) Notify(Notification) {}

// Func adapts a function to a Notifier. The function is called on the
// caller's goroutine, so it must not block either.
type Func func(Notification)

// Notify calls f(n).
func (f Func) Notify(n Notification) { f(n) }

var (
	_ Notifier = Nop{}
	_ Notifier = Func(nil)
	_ Notifier = (*Webhook)(nil)
)
