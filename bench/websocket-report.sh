#!/usr/bin/env bash
# Writes the section "WebSocket against TCP (issue 14)" of docs/BENCHMARKS.md from the results of
# bench/websocket.sh: `websocket-report.sh [RESULTS_DIR]` prints it; with SPLICE=1 it replaces the section
# in docs/BENCHMARKS.md in place (the first time, it goes right before the notes by hand that end the
# page, which come from bench/notes.md). Every figure comes from the JSON lines in the results directory.
# `make bench` rewrites the page without this section: run `SPLICE=1 bash bench/websocket-report.sh` after
# it to put the section back from the committed results.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/report-lib.sh
R=${1:-bench/results-websocket}
# The two steps of the sweep shown per round.
LOW=${LOW:-3000}
HIGH=${HIGH:-5000}
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
title="## WebSocket against TCP (issue 14)"

if [ "${SPLICE:-}" = 1 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    SPLICE= bash "$0" "$R" >"$tmp/section.md"
    splice_section "$title" "$tmp/section.md"
    exit 0
fi

fmt='def f1: . * 10 | round / 10; def f2: . * 100 | round / 100; def f0: round;
     def median: sort | .[(length - 1) / 2 | floor];
     def at($r): [.steps[] | select(.rate == $r)][0] // {};'
# jq over the files given, slurped: j FILTER FILES...
j() {
    local f=$1
    shift
    jq -rs "$fmt $f" "$@"
}
files() { ls "$R"/"$1"-*.json | sort -V; }
one_tcp=$(files one-tcp)
one_ws=$(files one-ws)
idle_tcp=$(files idle-tcp)
idle_ws=$(files idle-ws)
rounds=$(echo $one_tcp | wc -w)

rate_tcp=$(j 'map(.max_sustained_rate // 0) | median' $one_tcp)
rate_ws=$(j 'map(.max_sustained_rate // 0) | median' $one_ws)
rss_tcp=$(j 'map(.server_rss_mb) | median | f1' $idle_tcp)
rss_ws=$(j 'map(.server_rss_mb) | median | f1' $idle_ws)
users=$(j '.[0].n' $idle_tcp)
clients=$(j '.[0].n' $one_tcp)
rate_pct=$(jq -n "$rate_ws / $rate_tcp * 100 | round")
rate_ratio=$(jq -n "$rate_ws / $rate_tcp / 0.8 * 100 | round / 100")
rss_x=$(printf %.2f "$(jq -n "$rss_ws / $rss_tcp")")
rss_ratio=$(jq -n "1.2 / ($rss_ws / $rss_tcp) * 100 | round / 100")
verdict() { if jq -en "$1 >= 1" >/dev/null; then echo meets; else echo misses; fi; }
sustained_list() { j 'map(.max_sustained_rate // "none" | tostring) | join(" ")' "$@"; }

cat <<EOF
$title

\`chat-bench --transport ws\` sends the same frames as masked WebSocket text messages on a node's \`/ws\`
(its \`--http\` listener) instead of NUL-terminated on its chat port; everything else (open loop, stamps,
loss, latency from the due time) is as above. Each run gets a fresh node on a fresh SQLite database, and
the runs alternate TCP and WebSocket, $rounds of each, so that whatever else the machine runs weighs on
both alike; the figures are the medians of those rounds. The one-to-one runs sweep the rates below
(steps of $(j '.[0].duration_s' $one_tcp) s, every rate run even after one failed: on this shared machine a
disturbed step would end a sweep early), and a round's sustained rate is its highest passing one; the pass
rule is the one above (loss ≤ 0.1 %, p99 ≤ 200 ms, ≥ 95 % of the offered rate achieved). Measured
$(date -u -r "$(ls -t "$R"/*.json | head -1)" '+%Y-%m-%d %H:%M UTC') by \`bench/websocket.sh\`; this
section is written by \`bench/websocket-report.sh\` (\`SPLICE=1\` puts it in this page).

| target | goal | measured | ratio | |
|---|---|---|---|---|
| one-to-one over WebSocket, 1 node, $clients clients: sustained rate against the same run over TCP | ≥ 80 % | $rate_ws against $rate_tcp msg/s: $rate_pct % | $rate_ratio | $(verdict "$rate_ratio") |
| $users idle logged-in connections on 1 node: RSS over WebSocket against TCP | ≤ 1.2× | $rss_ws against $rss_tcp MiB: ${rss_x}× | $rss_ratio | $(verdict "$rss_ratio") |

Sustained rate per round (msg/s): TCP $(sustained_list $one_tcp); WebSocket $(sustained_list $one_ws).

**One-to-one, $clients clients** (per round; CPU per delivered message; \`bench CPU\` is what the tool took,
\`other\` what the machine spent on neither):

| run | sustained msg/s | p99 at $LOW msg/s | p99 at $HIGH | server CPU µs/msg at $LOW | at $HIGH | ctx switches/msg at $HIGH | bench CPU s at $HIGH | other CPU s at $HIGH |
|---|---|---|---|---|---|---|---|---|
EOF
for f in $one_tcp $one_ws; do
    jq -r --argjson low "$LOW" --argjson high "$HIGH" "$fmt"' "| \(.label) | \(.max_sustained_rate // "none") | \(at($low).p99_ms // "-" | if type == "number" then f2 else . end) ms | \(at($high).p99_ms // "-" | if type == "number" then f2 else . end) ms | \(at($low).server_cpu_us_per_msg // "-" | if type == "number" then f1 else . end) | \(at($high).server_cpu_us_per_msg // "-" | if type == "number" then f1 else . end) | \(at($high).ctx_switches_per_msg // "-" | if type == "number" then f2 else . end) | \(at($high).bench_cpu_s // "-" | if type == "number" then f1 else . end) | \(at($high).other_cpu_s // "-" | if type == "number" then f1 else . end) |"' "$f"
done
cat <<EOF

**$users idle connections** (logged in with v1, held 10 s; per connection = (RSS holding − RSS before) / N):

| run | connected | RSS before | RSS holding | peak RSS | KiB per connection | server threads | disconnects |
|---|---|---|---|---|---|---|---|
EOF
for f in $idle_tcp $idle_ws; do
    jq -r "$fmt"' "| \(.label) | \(.connected) / \(.n) | \(.server_rss_before_mb | f1) MiB | \(.server_rss_mb | f1) MiB | \(.server_peak_rss_mb | f1) MiB | \(.server_kib_per_conn | f1) | \(.server_threads) | \(.disconnects) |"' "$f"
done
cat <<EOF

Reproduce (the node as \`bench/websocket.sh\` starts it, then one of each; \`--addr\` is the node's chat port
for TCP and its HTTP listener for WebSocket; the ports are free ones picked at run time):

    ./target/release/chatserver --listen 127.0.0.1:PORT --http 127.0.0.1:HTTP_PORT --database sqlite:///dev/shm/ws.db --node-id one --argon2-memory-kib 64 --argon2-iterations 1
EOF
for name in one-tcp-1 one-ws-1 idle-tcp-1 idle-ws-1; do
    printf '    %s\n' "$(cat "$R/$name.cmd")"
done
