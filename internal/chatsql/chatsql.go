// Package chatsql holds the chat store's SQL that Postgres and SQLite both
// run as written, so the rules it states live once for both adapters.
package chatsql

// CanWrite is the condition, on conversations c, that the user the SQL
// expression user names may write (chat.Store's terms): a current member,
// and in a direct conversation not blocked by the other member.
func CanWrite(user string) string {
	return `EXISTS (SELECT 1 FROM members WHERE conversation_id = c.id AND user_id = ` + user + ` AND left_seq IS NULL)
	AND NOT (c.type = 1 AND EXISTS (SELECT 1 FROM members p JOIN blocks b ON b.blocker_id = p.user_id AND b.blocked_id = ` + user + `
		WHERE p.conversation_id = c.id AND p.user_id <> ` + user + `))`
}

// BlockedWriter selects whether writer $2, a current member of direct
// conversation $1, is blocked by its other member: why CanWrite refused.
const BlockedWriter = `SELECT EXISTS (SELECT 1 FROM conversations c
		JOIN members me ON me.conversation_id = c.id AND me.user_id = $2 AND me.left_seq IS NULL
		JOIN members p ON p.conversation_id = c.id AND p.user_id <> $2
		JOIN blocks b ON b.blocker_id = p.user_id AND b.blocked_id = $2
		WHERE c.id = $1 AND c.type = 1)`

// NotHidden excludes messages e that member m deleted for themselves.
const NotHidden = `NOT EXISTS (SELECT 1 FROM hidden_messages h
	WHERE h.user_id = m.user_id AND h.conversation_id = e.conversation_id AND h.message_seq = e.seq)`
