package chat

import (
	"time"
)

// Internals the black-box tests (package chat_test) reach for.

// RemoveMember is removeMember, for tests that hold a removal's
// transaction open.
var RemoveMember = removeMember

// SetNow sets the service's clock.
func SetNow(s *Service, now func() time.Time) { s.now = now }

// SetNotifier replaces the service's notifier.
func SetNotifier(s *Service, n Notifier) { s.notify = n }

// AppendEvent is appendEvent, for tests that hold an append's transaction
// open.
var AppendEvent = appendEvent

// MaxEventsPerRead is the most events ReadEvents returns per range.
const MaxEventsPerRead = maxEventsPerRead
