package bus

// The channels services and edges meet on, named in one place so the
// publishing and the subscribing side cannot drift apart.

// EdgeChannel carries Envelopes for the sessions of the edge edgeID.
func EdgeChannel(edgeID string) string { return "edge:" + edgeID }

// PresenceChannel carries a user's PresenceChanges to the edges whose
// sessions follow that user.
func PresenceChannel(userID string) string { return "presence:" + userID }
