-- The embedded store's schema: migrations/00001 to 00008 (the Postgres
-- schema) translated. A change to the Postgres schema needs its counterpart
-- here as a new file; versions here are numbered on their own.
--
-- Types, the same throughout:
--   uuid        -> TEXT, canonical lowercase (what uuid.UUID's Value and
--                  String give), so ids read as in the API and sort as
--                  Postgres sorts uuids (direct_key puts the smaller first).
--   timestamptz -> INTEGER, Unix microseconds, UTC (Postgres keeps µs too).
--                  Defaults are now() to the millisecond, all SQLite's clock
--                  gives; adapters that need µs pass the time.
--   bytea       -> BLOB; boolean -> INTEGER 0/1 (CHECKed);
--   smallint, integer, bigint -> INTEGER.
-- Tables are STRICT: a value of the wrong type (a time.Time bound as text, a
-- string id in an INTEGER column) is an error, not silently stored.
--
-- Sync's watermark: Postgres stamps rows with the writing transaction's xid8
-- (change_xid, xid). SQLite has one writer at a time, so a counter bumped
-- once per write transaction increases in commit order and is exact as the
-- watermark; change_seq on conversations and events holds it (see Tx.ChangeSeq
-- in sqlite.go for why).

-- +goose Up
CREATE TABLE change_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;
INSERT INTO change_counter (id, seq) VALUES (1, 0);

CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    -- Case-folded by the account service; the check guards other writers.
    -- Postgres checks '^[a-z0-9_.-]{3,32}$'; SQLite has no regex operator,
    -- and this GLOB with a length check says the same.
    username      TEXT NOT NULL UNIQUE CHECK (
        length(username) BETWEEN 3 AND 32 AND username NOT GLOB '*[^a-z0-9_.-]*'),
    display_name  TEXT NOT NULL DEFAULT '',
    -- argon2id in PHC string format; never leaves the account service.
    password_hash TEXT NOT NULL,
    create_time   INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER))
) STRICT;

CREATE TABLE devices (
    id                  TEXT NOT NULL PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                TEXT NOT NULL DEFAULT '',
    -- sha256 of the current refresh token, replaced on every refresh. Kept
    -- after logout so a revoked device's token is recognised as revoked.
    refresh_hash        BLOB NOT NULL UNIQUE,
    refresh_expire_time INTEGER NOT NULL,
    revoke_time         INTEGER,
    create_time         INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    last_refresh_time   INTEGER
) STRICT;
CREATE INDEX devices_user_idx ON devices (user_id, create_time);

-- A conversation is a single gap-free sequence of events (seq 1, 2, ...).
-- last_seq is bumped in the same transaction that inserts the event; write
-- transactions are serial, so seqs are assigned in commit order, no gaps.
CREATE TABLE conversations (
    id           TEXT NOT NULL PRIMARY KEY,
    type         INTEGER NOT NULL,           -- chat.v1.ConversationType
    title        TEXT NOT NULL DEFAULT '',
    -- "<smaller user id>:<larger user id>" for direct conversations, so the
    -- same pair always finds the same conversation.
    direct_key   TEXT UNIQUE,
    last_seq     INTEGER NOT NULL DEFAULT 0,
    member_count INTEGER NOT NULL DEFAULT 0,
    -- The change sequence of the transaction that added the newest event
    -- (Postgres: change_xid). No default: it comes from Tx.ChangeSeq.
    change_seq   INTEGER NOT NULL,
    create_time  INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    update_time  INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER))
) STRICT;

-- One row per (conversation, user) ever a member. A member sees events with
-- joined_seq < seq <= left_seq (left_seq NULL while still a member).
CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL,
    role            INTEGER NOT NULL,       -- chat.v1.MemberRole
    joined_seq      INTEGER NOT NULL,
    left_seq        INTEGER,
    join_time       INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    read_seq        INTEGER NOT NULL DEFAULT 0,
    muted           INTEGER NOT NULL DEFAULT 0 CHECK (muted IN (0, 1)),
    PRIMARY KEY (conversation_id, user_id)
) STRICT;
CREATE INDEX members_user_idx ON members (user_id, conversation_id);

-- Every event of every conversation. A message is one row (kind 1) that
-- edits and recalls update in place, besides adding their own events; a send
-- therefore writes one events row and updates one conversations row, however
-- many members the conversation has.
CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_device_id TEXT,
    -- The writing transaction's change sequence (Postgres: xid).
    change_seq      INTEGER NOT NULL,
    create_time     INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    -- The event's oneof body, protobuf-encoded (a chat.v1.Event holding only
    -- its kind). For messages: the MessageContent; empty after a recall.
    body            BLOB NOT NULL,
    message_id      TEXT UNIQUE,
    client_msg_id   TEXT,
    edit_time       INTEGER,
    recall_time     INTEGER,
    -- The message an edit, recall or reaction event is about, so a recall can
    -- find and empty the edits that still carry the message's old text.
    target_seq      INTEGER,
    -- On an edit or recall event, the message's content just before it: what
    -- a member who left before the change still sees.
    prev_body       BLOB,
    PRIMARY KEY (conversation_id, seq)
) STRICT;
CREATE UNIQUE INDEX events_client_msg_idx ON events (conversation_id, actor_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX events_change_idx ON events (conversation_id, change_seq);
CREATE INDEX events_target_idx ON events (conversation_id, target_seq) WHERE target_seq IS NOT NULL;

-- Each user has one gap-free sequence of their own events (read markers
-- from any device, deleted-for-me, mutes, contact changes) that all of the
-- user's devices apply. last_seq is bumped in the same transaction that
-- inserts the event.
CREATE TABLE user_streams (
    user_id  TEXT NOT NULL PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT;

CREATE TABLE user_events (
    user_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    create_time INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    -- A chat.v1.UserEvent holding only its kind, protobuf-encoded.
    body        BLOB NOT NULL,
    PRIMARY KEY (user_id, seq)
) STRICT;

-- One row per (message, emoji, user): a user reacts at most once with each
-- emoji. Counts are aggregated on read.
CREATE TABLE reactions (
    conversation_id TEXT NOT NULL,
    message_seq     INTEGER NOT NULL,
    emoji           TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    create_time     INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    PRIMARY KEY (conversation_id, message_seq, emoji, user_id),
    FOREIGN KEY (conversation_id, message_seq) REFERENCES events (conversation_id, seq) ON DELETE CASCADE
) STRICT;

-- Messages a user deleted for themselves. Hidden from that user's history
-- and unread counts only.
CREATE TABLE hidden_messages (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, message_seq),
    FOREIGN KEY (conversation_id, message_seq) REFERENCES events (conversation_id, seq) ON DELETE CASCADE
) STRICT;
-- Not in Postgres: SQLite looks up the children of each deleted event
-- without one, so deleting a conversation would scan this table per event.
CREATE INDEX hidden_messages_message_idx ON hidden_messages (conversation_id, message_seq);

-- The highest seq each device acknowledged per conversation, reported by
-- edges in batches.
CREATE TABLE deliveries (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    delivered_seq   INTEGER NOT NULL,
    update_time     INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    PRIMARY KEY (conversation_id, user_id, device_id)
) STRICT;

-- Each user's private contact list. A contact is one-sided: adding someone
-- neither asks nor tells them. alias is the owner's private name for the
-- contact ('' to use the profile's); length counts characters, as
-- Postgres's char_length.
CREATE TABLE contacts (
    owner_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    alias       TEXT NOT NULL DEFAULT '' CHECK (length(alias) <= 64),
    create_time INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    PRIMARY KEY (owner_id, user_id),
    CONSTRAINT contacts_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT contacts_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CHECK (owner_id <> user_id)
) STRICT;
-- Deleting a user cascades through user_id; this keeps that an index scan.
CREATE INDEX contacts_user_idx ON contacts (user_id);

-- Who blocked whom. Independent of contacts: blocking keeps the contact.
CREATE TABLE blocks (
    blocker_id  TEXT NOT NULL,
    blocked_id  TEXT NOT NULL,
    create_time INTEGER NOT NULL DEFAULT (CAST(round(unixepoch('subsec') * 1000000) AS INTEGER)),
    PRIMARY KEY (blocker_id, blocked_id),
    CONSTRAINT blocks_blocker_fk FOREIGN KEY (blocker_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT blocks_blocked_fk FOREIGN KEY (blocked_id) REFERENCES users (id) ON DELETE CASCADE,
    CHECK (blocker_id <> blocked_id)
) STRICT;
-- Who blocked a user (and the cascade when that user is deleted).
CREATE INDEX blocks_blocked_idx ON blocks (blocked_id, blocker_id);

-- +goose Down
DROP TABLE blocks;
DROP TABLE contacts;
DROP TABLE deliveries;
DROP TABLE hidden_messages;
DROP TABLE reactions;
DROP TABLE user_events;
DROP TABLE user_streams;
DROP TABLE events;
DROP TABLE members;
DROP TABLE conversations;
DROP TABLE devices;
DROP TABLE users;
DROP TABLE change_counter;
