-- +goose Up
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Case-folded by the account service; the check guards other writers.
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{3,32}$'),
    display_name  text NOT NULL DEFAULT '',
    -- argon2id in PHC string format; never leaves the account service.
    password_hash text NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    -- sha256 of the current refresh token, replaced on every refresh. Kept
    -- after logout so a revoked device's token is recognised as revoked.
    refresh_hash        bytea NOT NULL UNIQUE,
    refresh_expire_time timestamptz NOT NULL,
    revoke_time         timestamptz,
    create_time         timestamptz NOT NULL DEFAULT now(),
    last_refresh_time   timestamptz
);
CREATE INDEX devices_user_idx ON devices (user_id, create_time);

-- +goose Down
DROP TABLE devices;
DROP TABLE users;
