-- One 1:1 send as Waggle's chat service stores it, for pgbench: the
-- statements of Service.storeSends (services/chat/sendbatch.go) for a
-- batch of one, sent the way pgx's SendBatch sends them, in one pipeline
-- and one transaction (pgx leaves the transaction implicit; BEGIN and
-- COMMIT here only make it explicit, in the same round trip). With the
-- \startpipeline lines removed (bench-sends.sh's "plain" run) it is the
-- naive form: four round trips per message.
--
-- Ids follow seed.sql: conversation k is 00000000-0000-4000-8000-<1e11+k>,
-- its users 00000000-0000-4000-9000-<2e11+2k+{0,1}>, their devices the
-- same number under b000. Variables: convs (set by -D).
\set k random(0, :convs - 1)
\set c 100000000000 + :k
\set u 200000000000 + 2 * :k + random(0, 1)
\startpipeline
BEGIN;
-- lockConversation (services/chat/events.go).
SELECT 1 FROM conversations WHERE id = ('00000000-0000-4000-8000-' || :c)::uuid FOR NO KEY UPDATE;
-- storeSends' statement (services/chat/sendbatch.go), its arrays of one:
-- sender, device, body (a 200-byte Custom payload encodes to 220 bytes of
-- MessageContent), message_id (uuid.NewV7 in Go: time-ordered, so here
-- the first 6 bytes of a random uuid are replaced by the Unix ms),
-- client_msg_id (the SDK's uuid.NewString). canWriteOf("req.actor")
-- (services/chat/events.go) is inlined.
WITH req AS (
	SELECT * FROM unnest(
		ARRAY[('00000000-0000-4000-9000-' || :u)::uuid],
		ARRAY[('00000000-0000-4000-b000-' || :u)::uuid],
		ARRAY[decode(repeat('ab', 220), 'hex')],
		ARRAY[encode(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 'hex')::uuid],
		ARRAY[gen_random_uuid()::text]) WITH ORDINALITY
		AS r(actor, device, body, mid, cmid, ord)),
ok AS (
	SELECT req.*, row_number() OVER (ORDER BY req.ord) AS n FROM req, conversations c
	WHERE c.id = ('00000000-0000-4000-8000-' || :c)::uuid
		AND EXISTS (SELECT 1 FROM members WHERE conversation_id = c.id AND user_id = req.actor AND left_seq IS NULL)
		AND NOT (c.type = 1 AND EXISTS (SELECT 1 FROM members p JOIN blocks b ON b.blocker_id = p.user_id AND b.blocked_id = req.actor
			WHERE p.conversation_id = c.id AND p.user_id <> req.actor))
		AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = ('00000000-0000-4000-8000-' || :c)::uuid AND e.actor_id = req.actor AND e.client_msg_id = req.cmid)),
bump AS (
	UPDATE conversations c SET last_seq = last_seq + (SELECT count(*) FROM ok), change_xid = pg_current_xact_id(), update_time = now()
	WHERE c.id = ('00000000-0000-4000-8000-' || :c)::uuid AND EXISTS (SELECT 1 FROM ok)
	RETURNING last_seq, update_time)
INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, message_id, client_msg_id)
SELECT ('00000000-0000-4000-8000-' || :c)::uuid, bump.last_seq - (SELECT count(*) FROM ok) + ok.n, 1, ok.actor, ok.device, bump.update_time, ok.body, ok.mid, ok.cmid
FROM bump, ok
RETURNING message_id, seq, create_time;
COMMIT;
\endpipeline
