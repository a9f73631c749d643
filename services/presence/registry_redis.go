package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// Redis layout (Redis 7.0 has no per-field hash TTL):
//
//	<prefix>sess:{<user_id>}      HASH session_id → "<expiry unix ms>:<Session protobuf>"
//	<prefix>lastseen:{<user_id>}  STRING unix ms, no TTL
//	<prefix>sess-expiry           ZSET user_id scored by the newest session expiry (unix ms)
//
// A session is live while its expiry is in the future. Reads skip expired
// fields; writes and a prune after reads remove them. The hash's own PEXPIRE
// lies one TTL beyond its newest expiry, so a dead edge's keys vanish without
// anyone reading them. Last seen is written on every register and renew (the
// last moment the user was known connected, even if their edge then died) and
// when a session is unregistered. The {user_id} hash tag keeps a user's keys
// in one Redis Cluster slot, as the scripts need.
//
// All writes are Lua scripts, so the online/offline transitions they report
// are exact even with several edges writing for one user. Times come from the
// service's clock (passed in as ARGV), never Redis's. The expiry index,
// written with each register and renew, lets sweep find users whose edge
// died.

// redisStore is the sessionStore of processes sharing one Redis.
type redisStore struct {
	client *redis.Client
	prefix string
	// keyGrace is how long a user's keys outlive their newest session.
	keyGrace time.Duration
}

// NewRedisRegistry returns a registry keeping its keys under prefix in
// client, shared by every presence process using the same prefix. A nil
// logger discards logs.
func NewRedisRegistry(client *redis.Client, prefix string, logger *slog.Logger, cfg RegistryConfig) *Registry {
	return newRegistry(&redisStore{client: client, prefix: prefix, keyGrace: cfg.sessionTTL()}, logger, cfg)
}

// The scripts share this prologue: now; expiry(), which reads the leading
// number of a stored session; hdel(), field by field (unpack has a stack
// limit).
const scriptPrologue = `
local now = tonumber(ARGV[1])
local function expiry(v) return tonumber(string.match(v, '^(%d+):')) or 0 end
local function hdel(key, fields)
  for _, f in ipairs(fields) do redis.call('HDEL', key, f) end
end
`

// writeScript registers or renews sessions of one user.
// KEYS: sessions, last seen. ARGV: now, key grace ms, then session id and
// encoded session pairs.
// Returns {live before, live after, expired found, last seen before, restored}.
var writeScript = redis.NewScript(scriptPrologue + `
local fields = redis.call('HGETALL', KEYS[1])
local live, dead, nlive, maxexp = {}, {}, 0, 0
for i = 1, #fields, 2 do
  local exp = expiry(fields[i + 1])
  if exp > now then
    live[fields[i]] = true
    nlive = nlive + 1
    maxexp = math.max(maxexp, exp)
  else
    dead[#dead + 1] = fields[i]
  end
end
hdel(KEYS[1], dead)
local restored, nafter = 0, nlive
for i = 3, #ARGV, 2 do
  if not live[ARGV[i]] then
    restored = restored + 1
    nafter = nafter + 1
  end
  maxexp = math.max(maxexp, expiry(ARGV[i + 1]))
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], maxexp - now + tonumber(ARGV[2]))
local seen = redis.call('GET', KEYS[2]) or ''
redis.call('SET', KEYS[2], ARGV[1])
return {nlive, nafter, #dead, seen, restored}
`)

// unregisterScript removes sessions of one user.
// KEYS: sessions, last seen. ARGV: now, key grace ms, then session ids.
// Returns {live before, live after, expired found, last seen after}.
var unregisterScript = redis.NewScript(scriptPrologue + `
local gone = {}
for i = 3, #ARGV do gone[ARGV[i]] = true end
local fields = redis.call('HGETALL', KEYS[1])
local remove, nbefore, nafter, ndead, maxexp, found = {}, 0, 0, 0, 0, false
for i = 1, #fields, 2 do
  local f, exp = fields[i], expiry(fields[i + 1])
  if exp > now then nbefore = nbefore + 1 else ndead = ndead + 1 end
  if gone[f] then
    found = true
    remove[#remove + 1] = f
  elseif exp > now then
    nafter = nafter + 1
    maxexp = math.max(maxexp, exp)
  else
    remove[#remove + 1] = f
  end
end
hdel(KEYS[1], remove)
if found then redis.call('SET', KEYS[2], ARGV[1]) end
if nafter == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], maxexp - now + tonumber(ARGV[2]))
end
return {nbefore, nafter, ndead, redis.call('GET', KEYS[2]) or ''}
`)

// pruneScript removes the expired sessions a read came across.
// KEYS: sessions, last seen. ARGV: now.
// Returns {live before, live after, expired found, last seen}.
var pruneScript = redis.NewScript(scriptPrologue + `
local fields = redis.call('HGETALL', KEYS[1])
local dead, nlive = {}, 0
for i = 1, #fields, 2 do
  if expiry(fields[i + 1]) > now then nlive = nlive + 1 else dead[#dead + 1] = fields[i] end
end
hdel(KEYS[1], dead)
if nlive == 0 then redis.call('DEL', KEYS[1]) end
return {nlive, nlive, #dead, redis.call('GET', KEYS[2]) or ''}
`)

func (r *redisStore) sessionsKey(userID string) string { return r.prefix + "sess:{" + userID + "}" }
func (r *redisStore) lastSeenKey(userID string) string { return r.prefix + "lastseen:{" + userID + "}" }
func (r *redisStore) expiryKey() string                { return r.prefix + "sess-expiry" }

func (r *redisStore) write(ctx context.Context, sessions []*presencev1.Session, now, expiry time.Time) ([]transition, error) {
	groups := groupByUser(sessions)
	calls := make([]scriptCall, len(groups))
	members := make([]redis.Z, len(groups))
	for i, g := range groups {
		args := []any{now.UnixMilli(), r.keyGrace.Milliseconds()}
		for _, j := range g.indexes {
			v, err := encodeSession(sessions[j], expiry)
			if err != nil {
				return nil, fmt.Errorf("encode session %s: %w", sessions[j].GetSessionId(), err)
			}
			args = append(args, sessions[j].GetSessionId(), v)
		}
		calls[i] = scriptCall{userID: g.userID, args: args}
		members[i] = redis.Z{Score: float64(expiry.UnixMilli()), Member: g.userID}
	}
	return r.runScripts(ctx, writeScript, calls, func(p redis.Pipeliner) { p.ZAddGT(ctx, r.expiryKey(), members...) })
}

func (r *redisStore) unregister(ctx context.Context, sessions []*presencev1.Session, now time.Time) ([]transition, error) {
	groups := groupByUser(sessions)
	calls := make([]scriptCall, len(groups))
	for i, g := range groups {
		args := []any{now.UnixMilli(), r.keyGrace.Milliseconds()}
		for _, j := range g.indexes {
			args = append(args, sessions[j].GetSessionId())
		}
		calls[i] = scriptCall{userID: g.userID, args: args}
	}
	return r.runScripts(ctx, unregisterScript, calls)
}

func (r *redisStore) prune(ctx context.Context, userIDs []string, now time.Time) ([]transition, error) {
	calls := make([]scriptCall, len(userIDs))
	for i, id := range userIDs {
		calls[i] = scriptCall{userID: id, args: []any{now.UnixMilli()}}
	}
	return r.runScripts(ctx, pruneScript, calls)
}

// sweepScript removes users from the expiry index whose newest expiry is
// still the one that passed (a renewal meanwhile raised it).
// KEYS: the index. ARGV: now, then user ids.
var sweepScript = redis.NewScript(`
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
`)

func (r *redisStore) sweep(ctx context.Context, now time.Time, limit int) (int, []transition, error) {
	users, err := r.client.ZRangeByScore(ctx, r.expiryKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil || len(users) == 0 {
		return 0, nil, err
	}
	ts, err := r.prune(ctx, users, now)
	if err != nil {
		// The users stay in the index, for the next sweep to retry.
		return 0, nil, fmt.Errorf("prune swept users: %w", err)
	}
	args := make([]any, 0, 1+len(users))
	args = append(args, now.UnixMilli())
	for _, u := range users {
		args = append(args, u)
	}
	if err := sweepScript.Run(ctx, r.client, []string{r.expiryKey()}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return 0, ts, fmt.Errorf("sweep expiry index: %w", err)
	}
	return len(users), ts, nil
}

// scriptCall is one script run for one user.
type scriptCall struct {
	userID string
	args   []any
}

// runScripts runs script once per call in one pipelined round trip, plus
// the idempotent commands also adds, if any. Redis forgets loaded scripts
// when it restarts; on NOSCRIPT the script is loaded and the pipeline sent
// again (no script ran, since every EVALSHA failed).
func (r *redisStore) runScripts(ctx context.Context, script *redis.Script, calls []scriptCall, also ...func(redis.Pipeliner)) ([]transition, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(calls))
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range calls {
				cmds[i] = script.EvalSha(ctx, p, []string{r.sessionsKey(c.userID), r.lastSeenKey(c.userID)}, c.args...)
			}
			for _, f := range also {
				f(p)
			}
			return nil
		})
		if attempt == 0 && isNoScript(err) {
			if err := script.Load(ctx, r.client).Err(); err != nil {
				return nil, fmt.Errorf("load script: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([]transition, len(calls))
		for i, cmd := range cmds {
			if out[i], err = parseTransition(calls[i].userID, cmd); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}

func parseTransition(userID string, cmd *redis.Cmd) (transition, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return transition{}, err
	}
	var counts [3]int64
	var seen string
	ok := len(vals) >= 4
	for i := 0; ok && i < 3; i++ {
		counts[i], ok = vals[i].(int64)
	}
	if ok {
		seen, ok = vals[3].(string)
	}
	if !ok {
		return transition{}, fmt.Errorf("unexpected script result %v", vals)
	}
	t := transition{
		userID:       userID,
		liveBefore:   counts[0] > 0,
		liveAfter:    counts[1] > 0,
		foundExpired: counts[2] > 0,
	}
	if ms, err := strconv.ParseInt(seen, 10, 64); err == nil {
		t.lastSeen = time.UnixMilli(ms)
	}
	if len(vals) > 4 {
		restored, _ := vals[4].(int64)
		t.restored = int(restored)
	}
	return t, nil
}

// encodeSession stores s (without the ids that are the hash key and field)
// behind its expiry.
func encodeSession(s *presencev1.Session, expiry time.Time) ([]byte, error) {
	buf := strconv.AppendInt(nil, expiry.UnixMilli(), 10)
	buf = append(buf, ':')
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, &presencev1.Session{
		DeviceId:  s.GetDeviceId(),
		EdgeId:    s.GetEdgeId(),
		LoginTime: s.GetLoginTime(),
	})
}

func decodeSession(userID, sessionID, v string) (*presencev1.Session, time.Time, error) {
	ms, rest, ok := strings.Cut(v, ":")
	if !ok {
		return nil, time.Time{}, errors.New("no expiry")
	}
	exp, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("expiry: %w", err)
	}
	s := &presencev1.Session{}
	if err := proto.Unmarshal([]byte(rest), s); err != nil {
		return nil, time.Time{}, err
	}
	s.SessionId, s.UserId = sessionID, userID
	return s, time.UnixMilli(exp), nil
}

func (r *redisStore) load(ctx context.Context, userIDs []string, withLastSeen bool, now time.Time) ([]UserState, []string, error) {
	sessCmds := make([]*redis.MapStringStringCmd, len(userIDs))
	seenCmds := make([]*redis.StringCmd, len(userIDs))
	// Pipelined's own error is the first command's, which for GET may be
	// redis.Nil; each command is checked below instead.
	_, _ = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range userIDs {
			sessCmds[i] = p.HGetAll(ctx, r.sessionsKey(id))
			if withLastSeen {
				seenCmds[i] = p.Get(ctx, r.lastSeenKey(id))
			}
		}
		return nil
	})
	out := make([]UserState, len(userIDs))
	var expired []string
	for i, id := range userIDs {
		st := UserState{UserID: id}
		fields, err := sessCmds[i].Result()
		if err != nil {
			return nil, nil, err
		}
		found := false
		for sid, v := range fields {
			s, exp, err := decodeSession(id, sid, v)
			if err != nil {
				return nil, nil, fmt.Errorf("decode session %s of user %s: %w", sid, id, err)
			}
			if exp.After(now) {
				st.Sessions = append(st.Sessions, s)
			} else {
				found = true
			}
		}
		sortSessions(st.Sessions)
		if found {
			expired = append(expired, id)
		}
		if withLastSeen {
			ms, err := seenCmds[i].Int64()
			switch {
			case err == nil:
				st.LastSeen = time.UnixMilli(ms)
			case !errors.Is(err, redis.Nil):
				return nil, nil, err
			}
		}
		out[i] = st
	}
	return out, expired, nil
}
