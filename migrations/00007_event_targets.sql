-- +goose Up

-- The message an edit, recall or reaction event is about, so a recall can
-- find and empty the edits that still carry the message's old text.
ALTER TABLE events ADD COLUMN target_seq bigint;
CREATE INDEX events_target_idx ON events (conversation_id, target_seq) WHERE target_seq IS NOT NULL;

-- +goose Down
DROP INDEX events_target_idx;
ALTER TABLE events DROP COLUMN target_seq;
