-- +goose Up

-- Each user has one gap-free sequence of their own events (read markers
-- from any device, deleted-for-me, mutes, contact changes) that all of the
-- user's devices apply. last_seq is bumped under the row lock in the same
-- transaction that inserts the event.
CREATE TABLE user_streams (
    user_id  uuid PRIMARY KEY,
    last_seq bigint NOT NULL
);

CREATE TABLE user_events (
    user_id     uuid NOT NULL,
    seq         bigint NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    -- A chat.v1.UserEvent holding only its kind, protobuf-encoded.
    body        bytea NOT NULL,
    PRIMARY KEY (user_id, seq)
);

-- +goose Down
DROP TABLE user_events;
DROP TABLE user_streams;
