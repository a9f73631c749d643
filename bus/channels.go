package bus

// The channels services and edges meet on, named in one place so the
// publishing and the subscribing side cannot drift apart.

const (
	conversationPrefix = "conv:"
	userPrefix         = "user:"
	presencePrefix     = "presence:"
)

// ConversationChannel carries a group's events and ephemeral pushes to the
// edges holding sessions of its members.
func ConversationChannel(conversationID string) string { return conversationPrefix + conversationID }

// UserChannel carries what concerns one user's sessions: their own events,
// their direct conversations' events, the group events that make them a
// member, ephemeral pushes for them and logouts.
func UserChannel(userID string) string { return userPrefix + userID }

// PresenceChannel carries a user's PresenceChanges to the edges whose
// sessions follow that user.
func PresenceChannel(userID string) string { return presencePrefix + userID }

// ChannelKind is what a channel carries, told by its name.
type ChannelKind int

const (
	UnknownChannel ChannelKind = iota
	ConversationChannelKind
	UserChannelKind
	PresenceChannelKind
)

// ParseChannel splits a channel name into its kind and id.
func ParseChannel(channel string) (ChannelKind, string) {
	for _, k := range []struct {
		prefix string
		kind   ChannelKind
	}{{conversationPrefix, ConversationChannelKind}, {userPrefix, UserChannelKind}, {presencePrefix, PresenceChannelKind}} {
		if len(channel) > len(k.prefix) && channel[:len(k.prefix)] == k.prefix {
			return k.kind, channel[len(k.prefix):]
		}
	}
	return UnknownChannel, ""
}
