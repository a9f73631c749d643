-- pgbench's data for send.sql, in a database migrated by `waggle migrate`:
-- :convs direct conversations as CreateDirectConversation leaves them
-- (services/chat/conversations.go: the conversation, its two members, the
-- creation event at seq 1), each with :history messages before the run,
-- and the users and devices they belong to. Ids as send.sql says.
INSERT INTO users (id, username, password_hash)
SELECT ('00000000-0000-4000-9000-' || u)::uuid, 'pgb' || u, '$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA'
FROM generate_series(200000000000, 200000000000 + 2 * :convs - 1) u;
INSERT INTO devices (id, user_id, refresh_hash, refresh_expire_time)
SELECT ('00000000-0000-4000-b000-' || u)::uuid, ('00000000-0000-4000-9000-' || u)::uuid, sha256(u::text::bytea), now() + interval '30 days'
FROM generate_series(200000000000, 200000000000 + 2 * :convs - 1) u;
INSERT INTO conversations (id, type, direct_key, member_count, last_seq)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + k))::uuid, 1,
	'00000000-0000-4000-9000-' || (200000000000 + 2 * k) || ':00000000-0000-4000-9000-' || (200000000001 + 2 * k), 2, 1 + :history
FROM generate_series(0, :convs - 1) k;
INSERT INTO members (conversation_id, user_id, role, joined_seq)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + k))::uuid, ('00000000-0000-4000-9000-' || (200000000000 + 2 * k + s))::uuid, 1, 0
FROM generate_series(0, :convs - 1) k, generate_series(0, 1) s;
INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, body)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + k))::uuid, 1, 6, ('00000000-0000-4000-9000-' || (200000000000 + 2 * k))::uuid,
	('00000000-0000-4000-b000-' || (200000000000 + 2 * k))::uuid, '\x'::bytea
FROM generate_series(0, :convs - 1) k;
INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, body, message_id, client_msg_id)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + k))::uuid, 1 + i, 1, ('00000000-0000-4000-9000-' || (200000000000 + 2 * k + i % 2))::uuid,
	('00000000-0000-4000-b000-' || (200000000000 + 2 * k + i % 2))::uuid, decode(repeat('ab', 220), 'hex'), gen_random_uuid(), gen_random_uuid()::text
FROM generate_series(0, :convs - 1) k, generate_series(1, :history) i;
ANALYZE;
