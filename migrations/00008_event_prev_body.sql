-- +goose Up

-- On an edit or recall event, the message's content just before it: what a
-- member who left before the change still sees (history as of leaving is
-- rebuilt from the first such event after the member's leaving seq).
ALTER TABLE events ADD COLUMN prev_body bytea;

-- +goose Down
ALTER TABLE events DROP COLUMN prev_body;
