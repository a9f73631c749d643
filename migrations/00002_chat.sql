-- +goose Up

-- A conversation is a single gap-free sequence of events (seq 1, 2, ...).
-- last_seq is bumped under the row lock in the same transaction that inserts
-- the event, so seqs are assigned in commit order with no gaps.
CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    type        smallint NOT NULL,           -- chat.v1.ConversationType
    title       text NOT NULL DEFAULT '',
    -- "<smaller user id>:<larger user id>" for direct conversations, so the
    -- same pair always finds the same conversation.
    direct_key  text UNIQUE,
    last_seq    bigint NOT NULL DEFAULT 0,
    member_count integer NOT NULL DEFAULT 0,
    -- The transaction that added the newest event. Sync uses it to find the
    -- conversations changed since a cursor (see services/chat/sync.go).
    change_xid  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);

-- One row per (conversation, user) ever a member. A member sees events with
-- joined_seq < seq <= left_seq (left_seq NULL while still a member).
CREATE TABLE members (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    role            smallint NOT NULL,       -- chat.v1.MemberRole
    joined_seq      bigint NOT NULL,
    left_seq        bigint,
    join_time       timestamptz NOT NULL DEFAULT now(),
    read_seq        bigint NOT NULL DEFAULT 0,
    muted           boolean NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user_idx ON members (user_id, conversation_id);

-- Every event of every conversation. A message is one row (kind 1) that
-- edits and recalls update in place, besides adding their own events; a send
-- therefore writes one events row and updates one conversations row, however
-- many members the conversation has.
CREATE TABLE events (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    kind            smallint NOT NULL,
    actor_id        uuid NOT NULL,
    actor_device_id uuid,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    create_time     timestamptz NOT NULL DEFAULT now(),
    -- The event's oneof body, protobuf-encoded (a chat.v1.Event holding only
    -- its kind). For messages: the MessageContent; empty after a recall.
    body            bytea NOT NULL,
    message_id      uuid UNIQUE,
    client_msg_id   text,
    edit_time       timestamptz,
    recall_time     timestamptz,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX events_client_msg_idx ON events (conversation_id, actor_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX events_xid_idx ON events (conversation_id, xid);

-- +goose Down
DROP TABLE events;
DROP TABLE members;
DROP TABLE conversations;
