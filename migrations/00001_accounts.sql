-- +goose Up
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               text NOT NULL DEFAULT '',
    -- sha256 of the current refresh token; rotated on every refresh.
    refresh_hash       bytea UNIQUE,
    refresh_expire_time timestamptz,
    revoke_time        timestamptz,
    create_time        timestamptz NOT NULL DEFAULT now(),
    last_refresh_time  timestamptz
);
CREATE INDEX devices_user_idx ON devices (user_id);

-- +goose Down
DROP TABLE devices;
DROP TABLE users;
