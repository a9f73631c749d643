-- +goose Up

-- Each user's private contact list. A contact is one-sided: adding someone
-- neither asks nor tells them. alias is the owner's private name for the
-- contact ('' to use the profile's).
CREATE TABLE contacts (
    owner_id    uuid NOT NULL,
    user_id     uuid NOT NULL,
    alias       text NOT NULL DEFAULT '' CHECK (char_length(alias) <= 64),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, user_id),
    CONSTRAINT contacts_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT contacts_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CHECK (owner_id <> user_id)
);
-- Deleting a user cascades through user_id; this keeps that an index scan.
CREATE INDEX contacts_user_idx ON contacts (user_id);

-- Who blocked whom. Independent of contacts: blocking keeps the contact.
-- The presence service reads a Redis mirror of this table (the set of
-- blockers of each user, see services/contact/blocks.go), which the contact
-- service updates after each commit.
CREATE TABLE blocks (
    blocker_id  uuid NOT NULL,
    blocked_id  uuid NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CONSTRAINT blocks_blocker_fk FOREIGN KEY (blocker_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT blocks_blocked_fk FOREIGN KEY (blocked_id) REFERENCES users (id) ON DELETE CASCADE,
    CHECK (blocker_id <> blocked_id)
);
-- Who blocked a user (and the cascade when that user is deleted).
CREATE INDEX blocks_blocked_idx ON blocks (blocked_id, blocker_id);

-- +goose Down
DROP TABLE blocks;
DROP TABLE contacts;
