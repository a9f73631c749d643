#!/usr/bin/env bash
# Issue 10's send benchmark in one run: stored-and-acked 1:1 sends per
# second through waggle-bench at several paced rates and one "as fast as
# acked" run, against pgbench running the statements of one send
# (tools/bench-sends/send.sql) one transaction per message, interleaved
# (a pgbench run before each Waggle run and after the last), on the same
# machine. Prints a markdown table and
# the ratio of Waggle's best acked rate with ack p99 under 100 ms to the
# naive ceiling. Only 127.0.0.1; makes and drops its own databases and
# Redis prefix, and stops its server, on any exit (Ctrl-C included).
#
# Settings (environment): RATES (1000,2000,4000,8000), PAIRS (100 1:1
# conversations), DURATION (10, seconds measured per run), WARMUP (3),
# SIZE (200 payload bytes), MAX_IN_FLIGHT (200: the as-fast-as-acked run
# keeps this many sends awaiting their ack; 0 skips it), PROTOCOL
# (connect), PG_CONVS (1000), PG_CLIENTS (8), PG_HISTORY (20 messages
# per conversation before the run), WAGGLE and WAGGLE_BENCH (binaries;
# default: built from this tree), RAW (a file for every run's JSON),
# BUDGET (300: seconds after which the run is stopped).
set -euo pipefail
cd "$(dirname "$0")/.."

rates=${RATES:-1000,2000,4000,8000}
pairs=${PAIRS:-100}
duration=${DURATION:-10}
warmup=${WARMUP:-3}
size=${SIZE:-200}
max_in_flight=${MAX_IN_FLIGHT:-200}
protocol=${PROTOCOL:-connect}
pg_convs=${PG_CONVS:-1000}
pg_clients=${PG_CLIENTS:-8}
pg_history=${PG_HISTORY:-20}
budget=${BUDGET:-300}
pg=(-h 127.0.0.1 -p 5432 -U postgres)
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1 || true)
pgbench=${pgbench:-pgbench}

tmp=$(mktemp -d /tmp/bench-sends.XXXXXX)
id=$$
db=wsend_$id     # the server's
pgdb=wsend_pg_$id # pgbench's
prefix=wsend-$id:
server= child= watchdog=

cleanup() {
	trap - EXIT INT TERM
	set +e
	[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
	[ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null
		wait "$server" 2>/dev/null
	fi
	dropdb "${pg[@]}" --if-exists --force "$db" 2>/dev/null
	dropdb "${pg[@]}" --if-exists --force "$pgdb" 2>/dev/null
	redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix*" 2>/dev/null | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "bench-sends: interrupted" >&2; exit 130' INT TERM

log() { echo "bench-sends: $*" >&2; }

# free_port prints a port nothing on 127.0.0.1 listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	log "no free port found"
	return 1
}

# ticks prints the machine's idle (idle + iowait) and total CPU ticks.
ticks() { awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat; }
idle_since() { # idle_since "<idle> <total>": idle % from then to now
	local a b
	read -r a b <<<"$1"
	read -r c d <<<"$(ticks)"
	awk -v i=$((c - a)) -v t=$((d - b)) 'BEGIN{printf "%.0f", (t > 0 ? 100 * i / t : -1)}'
}

# backends prints the process ids of database $1's backends.
backends() {
	psql "${pg[@]}" -X -Atq -d postgres -c "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()"
}
# cpu_ticks sums the utime + stime of the processes named on stdin.
cpu_ticks() {
	local sum=0 pid f
	while read -r pid; do
		f=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null) || continue
		set -- $f
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}
hz=$(getconf CLK_TCK)

# A watchdog: the whole run stays bounded even if a child hangs.
(sleep "$budget" && log "over ${budget}s: stopping" && kill -TERM $$) &
watchdog=$!

waggle=${WAGGLE:-}
bench=${WAGGLE_BENCH:-}
if [ -z "$waggle" ] || [ -z "$bench" ]; then
	log "building ./cmd/waggle and ./cmd/waggle-bench"
	go build -o "$tmp/waggle" ./cmd/waggle
	go build -o "$tmp/waggle-bench" ./cmd/waggle-bench
	waggle=${waggle:-$tmp/waggle} bench=${bench:-$tmp/waggle-bench}
fi

before=$(ticks)
sleep 2
idle_before=$(idle_since "$before")
log "machine ${idle_before}% idle before the run (load average $(cut -d' ' -f1-3 /proc/loadavg))"

createdb "${pg[@]}" "$db"
createdb "${pg[@]}" "$pgdb"
pgurl="postgres://postgres@127.0.0.1:5432/$pgdb?sslmode=disable"
"$waggle" migrate --postgres "$pgurl" --log-level warn
psql "${pg[@]}" -X -q -v ON_ERROR_STOP=1 -d "$pgdb" -v convs="$pg_convs" -v history="$pg_history" -f tools/bench-sends/seed.sql
# The plain form: the same statements, a round trip each.
grep -v '^\\\(start\|end\)pipeline' tools/bench-sends/send.sql >"$tmp/send-plain.sql"

port=$(free_port)
# pool_min_conns: the pool's backends are all up before the first run, so
# their CPU over each measured window can be read (waggle-bench --pids).
"$waggle" serve --addr "127.0.0.1:$port" \
	--postgres "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable&pool_min_conns=32" \
	--redis-prefix "$prefix" --send-rate 100000 --send-burst 100000 --register-limit -1 --refresh-limit -1 \
	--log-level warn 2>"$tmp/serve.log" &
server=$!
for _ in $(seq 60); do
	(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	kill -0 "$server" 2>/dev/null || { log "waggle serve exited:"; cat "$tmp/serve.log" >&2; exit 1; }
	sleep 0.5
done
sleep 1 # pool_min_conns fills in the background
log "waggle serve pid $server on 127.0.0.1:$port, $(backends "$db" | wc -l) Postgres backends"

results=$tmp/results.tsv # kind label acked/s ack-p50 ack-p99 deliver-p50 deliver-p99 failed server-ms/1k pg-ms/1k idle% note
: >"$results"

# pgbench_run <label> <script>: one pgbench run, with its backends' CPU.
pgbench_run() {
	local label=$1 script=$2 t0 c0 c1 pids tps failed
	t0=$(ticks)
	"$pgbench" "${pg[@]}" -n -M prepared -c "$pg_clients" -j 2 -T "$duration" -D convs="$pg_convs" -f "$script" "$pgdb" >"$tmp/pgbench.out" 2>&1 &
	child=$!
	# Its backends are up within a second; their CPU is read from then
	# to a second before the end.
	sleep 1
	pids=$(backends "$pgdb")
	c0=$(cpu_ticks <<<"$pids")
	sleep $((duration - 2))
	c1=$(cpu_ticks <<<"$pids")
	wait "$child" || { cat "$tmp/pgbench.out" >&2; child=; return 1; }
	child=
	tps=$(awk '/^tps = /{print $3}' "$tmp/pgbench.out")
	failed=$(awk '/number of failed transactions/{print $5}' "$tmp/pgbench.out")
	# Backend CPU per 1,000 transactions over the sampled duration - 2 s.
	local pgms
	pgms=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v tps="$tps" -v s=$((duration - 2)) 'BEGIN{printf "%.0f", 1000 * (d / hz) / (tps * s) * 1000}')
	printf 'pgbench\t%s\t%.0f\t\t\t\t\t%s\t\t%s\t%s\t%s\n' "$label" "$tps" "${failed:-0}" "$pgms" "$(idle_since "$t0")" "$pg_clients clients" >>"$results"
	log "pgbench $label: $tps tps"
}

# waggle_run <label> <rate> [max-in-flight]: one waggle-bench run.
waggle_run() {
	local label=$1 rate=$2 inflight=${3:-10000} open=${3:+1} pids
	pids=$server,$(backends "$db" | paste -sd,)
	# The first run registers the users (argon2id: 10-50 s for 200 here);
	# the others refresh their tokens from --state.
	timeout $((warmup + duration + 150)) "$bench" --edges "http://127.0.0.1:$port" --protocol "$protocol" \
		--state "$tmp/users.json" \
		--users $((2 * pairs)) --shape direct --rate "$rate" --duration "${duration}s" --warmup "${warmup}s" \
		--size "$size" --max-in-flight "$inflight" --pids "$pids" --json --quiet >"$tmp/run.json" 2>>"$tmp/bench.log" &
	child=$!
	wait "$child" || { log "waggle-bench $label failed:"; tail -5 "$tmp/bench.log" >&2; child=; return 1; }
	child=
	[ -n "${RAW:-}" ] && jq -c --arg run "$label" '. + {run: $run}' "$tmp/run.json" >>"$RAW"
	# In the as-fast-as-acked run, sends skipped at the in-flight limit
	# are its pacing, not failures.
	jq -r --arg run "$label" --arg pid "$server" --arg open "$open" '
		def ms: . / 1e6 | . * 10 | round / 10;
		(.servers | map(select(.pid == ($pid | tonumber))) | .[0].cpu_ns) as $srv
		| (.servers | map(select(.pid != ($pid | tonumber)) | .cpu_ns) | add // 0) as $pg
		| (.errors["local: in-flight limit"] // 0) as $skipped
		| ((.errors | to_entries | map(select($open == "" or .key != "local: in-flight limit") | .value) | add) // 0) as $failed
		| [ "waggle", $run, (.acked_per_sec | round), (.ack_latency.p50_ns | ms), (.ack_latency.p99_ns | ms),
		    (.latency.p50_ns | ms), (.latency.p99_ns | ms), $failed,
		    (if .acked > 0 then ($srv / 1e6 / .acked * 1000 | round) else "" end),
		    (if .acked > 0 then ($pg / 1e6 / .acked * 1000 | round) else "" end),
		    ((.idle_percent // -1) | round),
		    ("\(.delivered)/\(.expected_deliveries) delivered, \(.gaps) gaps"
		     + (if $open != "" then ", \($skipped) due sends skipped at the limit" else "" end)
		     + (if $failed > 0 then ", failed: " + (.errors | to_entries | map(select($open == "" or .key != "local: in-flight limit") | "\(.key) \(.value)") | join(", ")) else "" end)) ]
		| @tsv' "$tmp/run.json" >>"$results"
	log "waggle $label: $(cut -f3 <(tail -n 1 "$results")) acked/s"
}

pgbench_run "plain" "$tmp/send-plain.sql"
for r in ${rates//,/ }; do
	pgbench_run "pipelined" tools/bench-sends/send.sql
	waggle_run "$r/s" "$r"
done
if [ "$max_in_flight" -gt 0 ]; then
	pgbench_run "pipelined" tools/bench-sends/send.sql
	# A rate no run here reaches: the in-flight limit paces it.
	waggle_run "as fast as acked ($max_in_flight in flight)" 50000 "$max_in_flight"
fi
pgbench_run "pipelined" tools/bench-sends/send.sql

# The report.
echo "Send throughput, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'); machine ${idle_before}% idle before the run."
echo "Waggle: $pairs 1:1 pairs, $size-byte payloads, $protocol, ${warmup}s warmup + ${duration}s measured per run. pgbench: $pg_convs conversations, $pg_clients clients, ${duration}s per run."
echo
echo "| run | rate | acked/s (tps) | ack p50 / p99 ms | send→deliver p50 / p99 ms | failed | server CPU ms per 1k sends | Postgres backends CPU ms per 1k | idle % | notes |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{
	lat = ($4 == "") ? "—" : $4 " / " $5
	del = ($6 == "") ? "—" : $6 " / " $7
	srv = ($9 == "") ? "—" : $9
	printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, lat, del, $8, srv, $10, $11, $12
}' "$results"
echo
awk -F'\t' '
	$1 == "waggle" && $5 != "" && $5 + 0 < 100 && $8 == 0 && $3 + 0 > best { best = $3 + 0; at = $2 }
	$1 == "pgbench" && $3 + 0 > ceiling { ceiling = $3 + 0; how = $2 }
	$1 == "pgbench" && $2 == "pipelined" { piped[++n] = $3 + 0 }
	END {
		if (best == 0) printf "Waggle: no run acked with p99 under 100 ms.\n"
		else printf "Waggle, most acked/s with ack p99 < 100 ms: %d (%s).\n", best, at
		for (i = 2; i <= n; i++) for (j = i; j > 1 && piped[j - 1] > piped[j]; j--) { x = piped[j]; piped[j] = piped[j - 1]; piped[j - 1] = x }
		printf "Naive ceiling (best pgbench run): %d tps (%s); pipelined runs %d to %d, median %d.\n", ceiling, how, piped[1], piped[n], piped[int((n + 1) / 2)]
		if (ceiling > 0) printf "Ratio: %.2f (issue 10 wants at least 3).\n", best / ceiling
	}' "$results"
if grep -q 'push dropped' "$tmp/serve.log"; then
	echo
	echo "The server dropped pushes: $(grep -c 'push dropped' "$tmp/serve.log") log lines say 'push dropped'."
fi
