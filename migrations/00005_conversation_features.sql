-- +goose Up

-- One row per (message, emoji, user): a user reacts at most once with each
-- emoji. Counts are aggregated on read.
CREATE TABLE reactions (
    conversation_id uuid NOT NULL,
    message_seq     bigint NOT NULL,
    emoji           text NOT NULL,
    user_id         uuid NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, message_seq, emoji, user_id),
    FOREIGN KEY (conversation_id, message_seq) REFERENCES events (conversation_id, seq) ON DELETE CASCADE
);

-- Messages a user deleted for themselves. Hidden from that user's history
-- and unread counts only.
CREATE TABLE hidden_messages (
    user_id         uuid NOT NULL,
    conversation_id uuid NOT NULL,
    message_seq     bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id, message_seq),
    FOREIGN KEY (conversation_id, message_seq) REFERENCES events (conversation_id, seq) ON DELETE CASCADE
);

-- The highest seq each device acknowledged per conversation, reported by
-- edges in batches.
CREATE TABLE deliveries (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    device_id       uuid NOT NULL,
    delivered_seq   bigint NOT NULL,
    update_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id, device_id)
);

-- +goose Down
DROP TABLE deliveries;
DROP TABLE hidden_messages;
DROP TABLE reactions;
