#!/usr/bin/env bash
# Writes the section "The durable log (issue 10)" of docs/BENCHMARKS.md (to stdout) from the results of
# bench/run.sh: durable-report.sh RESULTS_DIR. Every figure comes from a JSON line of chat-bench; a run
# that did not happen is "n/a". bench/report.sh includes this section; `DURABLE_ONLY=1 make bench` rewrites
# just this section in place.
set -euo pipefail
R=$1
source "$(dirname "$0")/report-lib.sh"

# median VALUES...: the median of numbers ("n/a" ones left out), or n/a.
median() {
    local values
    values=$(printf '%s\n' "$@" | grep -v '^n/a$' | sort -g || true)
    [ -n "$values" ] || { echo n/a; return; }
    echo "$values" | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# rounds WHICH FILTER: the filter over every compare-WHICH-N result, one line each.
rounds() {
    local f
    for f in "$R"/compare-"$1"-*.json; do
        [ -s "$f" ] || continue
        f=${f##*/}
        j "${f%.json}" "$2"
    done
}
cmp_median() { median $(rounds "$1" "$2"); }
# load NAME: the load averages (1, 5, 15 min) before and after one run.
load() { [ -s "$R/$1.load" ] && paste -sd/ "$R/$1.load" | sed 's|/| / |' || echo n/a; }
# pct A B: A / B in percent, or n/a.
pct() {
    case "$1$2" in *n/a*) echo n/a; return ;; esac
    LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.0f", 100 * a / b }'
}
# div A B: A / B, or n/a.
div() {
    case "$1$2" in *n/a*) echo n/a; return ;; esac
    LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.4f", a / b }'
}

OLD=$(cat "$R/compare-old.commit" 2>/dev/null || echo "the older binary")
CMP_RATE=$(cat "$R/compare-cpu-rate.txt" 2>/dev/null || echo 20000)
NEW_MAX=$(cmp_median new '.max_sustained_rate // 0')
OLD_MAX=$(cmp_median old '.max_sustained_rate // 0')
NEW_P99=$(cmp_median new '[.steps[] | select(.rate == 10000) | .p99_ms][0]')
[ "$NEW_P99" = n/a ] && NEW_P99=$(step one-sqlite 10000 p99_ms)
P99_SRC=compare-new-*
[ -s "$R/compare-new-1.json" ] || P99_SRC=one-sqlite
NEW_CPU=$(cmp_median new "[.steps[] | select(.rate == $CMP_RATE) | .server_cpu_us_per_msg][0]")
OLD_CPU=$(cmp_median old "[.steps[] | select(.rate == $CMP_RATE) | .server_cpu_us_per_msg][0]")
NEW_CPU10=$(cmp_median new '[.steps[] | select(.rate == 10000) | .server_cpu_us_per_msg][0]')
OLD_CPU10=$(cmp_median old '[.steps[] | select(.rate == 10000) | .server_cpu_us_per_msg][0]')
MY_P99=$(step one-mariadb 10000 p99_ms)
GROUP_MAX=$(j group-sqlite '[.steps[] | select(.passed) | .deliveries_per_s] | max // 0')
ACK_MAX=$(sustained_num ack-sqlite)
ACK_MY_MAX=$(sustained_num ack-mariadb)
SYNC_S=$(j sync-sqlite '.sync_s')
SYNC_OK=$(j sync-sqlite '.complete')
BYTES_SYNC=$(j sync-sqlite '.storage.bytes_per_msg')
BYTES_ACK=$(j ack-sqlite '.storage.bytes_per_msg')
SHARE=$(div "$NEW_MAX" "$OLD_MAX")
SHARE_RATIO=n/a
[ "$SHARE" != n/a ] && SHARE_RATIO=$(ratio "$SHARE" 0.9 higher)

# drow WHAT GOAL MEASURED RATIO FROM LOAD: a row of the table below.
drow() { echo "| $1 | $2 | $3 | $4 | $(verdict "$4") | $5 | $6 |"; }

# ack_table FILE: the acknowledged steps of a sweep.
ack_table() {
    local f=$R/$1.json
    [ -s "$f" ] || { echo "(no result: the run failed or did not happen)"; return; }
    echo "| offered msg/s | sent | acked | acked/s | unacked | resends | duplicate acks | delivered | duplicates seen by recipients | loss % | ack p50 ms | ack p99 ms | ack max ms | delivery p99 ms | server CPU µs/msg | bench CPU s | other CPU s | passed |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
    jq -r 'def r(n): if . == null then "n/a" else (. * pow(10; n) | round) / pow(10; n) | tostring end;
        .steps[] | "| \(.rate | r(0)) | \(.sent) | \(.acked) | \(.acked_per_s | r(0)) | \(.unacked) | \(.resends) | \(.dup_acks) | \(.received) | \(.duplicates) | \(.loss_pct | r(3)) | \(.ack_p50_ms | r(2)) | \(.ack_p99_ms | r(2)) | \(.ack_max_ms | r(1)) | \(.p99_ms | r(2)) | \(.server_cpu_us_per_msg | r(1)) | \(.bench_cpu_s | r(1)) | \(.other_cpu_s | r(1)) | \(if .passed then "yes" else "no" end) |"' "$f"
}

# storage_rows FILE: bytes per message by table and index.
storage_rows() {
    j "$1" '.storage.per_object | to_entries | map("`\(.key)` \(.value * 10 | round / 10)") | join(", ")'
}

cat <<EOF
## The durable log (issue 10)

Since the durable log, every chat message is committed to its conversation's log before it is delivered
(group commit; docs/PROTOCOL.md). These figures measure what that costs and what it gives: the one-to-one
path against the last commit before the log, acknowledged v2 sends with resends, a new device's catch-up
through CONVERSATIONS and HISTORY, and the bytes each stored message takes. Same machine, same
\`chat-bench\` rules as above (open loop, 64-byte texts, 1000 clients, cheap argon2, pass = loss ≤ 0.1 %,
p99 ≤ 200 ms, ≥ 95 % of the offered rate); the last column is the load average (1, 5, 15 min) before /
after the run the figure comes from, since this machine is shared. Measured at commit
\`$(head -1 "$R/build.txt" 2>/dev/null || echo unknown)\`$(files=$(sed -n 2p "$R/build.txt" 2>/dev/null); files=${files% }; [ -n "$files" ] && printf ' (plus uncommitted changes to: %s)' "$files"), $(date -u -r "$R/build.txt" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo "date unknown"), by:

    $([ -s "$R/compare-old.commit" ] && echo "CMP_SWEEP=$(grep -o -- '--sweep [^ ]*' "$R/compare-new-1.cmd" | cut -d' ' -f2) OLD_SERVER=/tmp/chatserver-$OLD OLD_COMMIT=$OLD ")$([ -s "$R/one-sqlite.json" ] || echo "DURABLE_ONLY=1 ")bash bench/run.sh

| target | goal | measured | ratio | | from | load average before / after |
|---|---|---|---|---|---|---|
EOF
drow "one-to-one, 1 node (SQLite), 1000 clients: sustained rate, this tree against \`$OLD\` (median of $(rounds new .n | wc -l) alternating rounds each)" "≥ 90 % of \`$OLD\`" "$(num "$NEW_MAX" 0) vs $(num "$OLD_MAX" 0) msg/s ($(pct "$NEW_MAX" "$OLD_MAX") %)" "$SHARE_RATIO" "compare-*" "$(load compare-new-1)"
drow "one-to-one, 1 node (SQLite): p99 at 10,000 msg/s$([ "$P99_SRC" = one-sqlite ] || echo ' (median of the rounds)')" "≤ 20 ms" "$(val "$NEW_P99" 2 ms)" "$(ratio "$NEW_P99" 20 lower)" "$P99_SRC" "$(load "${P99_SRC/-\*/-1}")"
drow "one-to-one, 1 node (MariaDB): p99 at 10,000 msg/s" "≤ 50 ms" "$(val "$MY_P99" 2 ms)" "$(ratio "$MY_P99" 50 lower)" "one-mariadb" "$(load one-mariadb)"
drow "group chat, groups of 20, 1 node: deliveries per second (highest passing step)" "≥ 50,000/s" "$(num "$GROUP_MAX" 0)/s" "$(ge group-sqlite)$(ratio "$GROUP_MAX" 50000 higher)" "group-sqlite" "$(load group-sqlite)"
drow "v2 acknowledged one-to-one with resend, 1000 clients, SQLite: sustained rate" "≥ 15,000 msg/s" "$(sustained ack-sqlite) msg/s" "$(ge ack-sqlite)$(ratio "$ACK_MAX" 15000 higher)" "ack-sqlite" "$(load ack-sqlite)"
drow "v2 acknowledged one-to-one with resend, 1000 clients, MariaDB: sustained rate" "≥ 8,000 msg/s" "$(sustained ack-mariadb) msg/s" "$(ge ack-mariadb)$(ratio "$ACK_MY_MAX" 8000 higher)" "ack-mariadb" "$(load ack-mariadb)"
drow "sync: fresh v2 login + CONVERSATIONS + HISTORY of $(j sync-sqlite .prepared) messages in $(j sync-sqlite .conversations) conversations (SQLite; complete: $SYNC_OK)" "≤ 1 s" "$(val "$SYNC_S" 3 s)" "$(ratio "$SYNC_S" 1 lower)" "sync-sqlite" "$(load sync-sqlite)"
drow "bytes per stored message (64-byte text, SQLite, indexes included): $(j sync-sqlite .peers) conversations of $(j sync-sqlite .per_peer)" "≤ 400 B" "$(val "$BYTES_SYNC" 1 B)" "$(ratio "$BYTES_SYNC" 400 lower)" "sync-sqlite" "$(load sync-sqlite)"
drow "bytes per stored message: $(j ack-sqlite '.storage.messages') messages between random pairs of $(j ack-sqlite .n) users" "≤ 400 B" "$(val "$BYTES_ACK" 1 B)" "$(ratio "$BYTES_ACK" 400 lower)" "ack-sqlite" "$(load ack-sqlite)"
echo "| server CPU per delivered message, one-to-one: this tree / \`$OLD\` at 10,000 and at $CMP_RATE msg/s (medians) | written down | $(val "$NEW_CPU10" 1 µs) / $(val "$OLD_CPU10" 1 µs); $(val "$NEW_CPU" 1 µs) / $(val "$OLD_CPU" 1 µs) | | | compare-* | |"

cat <<EOF

### One-to-one against \`$OLD\`, alternating

Each round starts a fresh node of each binary on its own SQLite file, one after the other (old, new, old,
new, …), and runs the same sweep; medians over the rounds. \`$OLD\` is the last commit before the log
(chats delivered straight from memory; only offline recipients' messages stored).

| round | binary | sustained msg/s | p99 at 10,000 ms | server CPU µs/msg at 10,000 | at $CMP_RATE | ctx switches/msg at 10,000 | load average before / after |
|---:|---|---:|---:|---:|---:|---:|---|
EOF
for f in "$R"/compare-old-*.json "$R"/compare-new-*.json; do
    [ -s "$f" ] || continue
    name=${f##*/}
    name=${name%.json}
    which=${name#compare-}
    which=${which%-*}
    round=${name##*-}
    bin=$([ "$which" = old ] && echo "\`$OLD\`" || echo "this tree")
    echo "| $round | $bin | $(num "$(j "$name" '.max_sustained_rate // 0')" 0) | $(num "$(step "$name" 10000 p99_ms)" 2) | $(num "$(step "$name" 10000 server_cpu_us_per_msg)" 1) | $(num "$(step "$name" "$CMP_RATE" server_cpu_us_per_msg)" 1) | $(num "$(step "$name" 10000 ctx_switches_per_msg)" 2) | $(load "$name") |"
done | sort -t'|' -k2,2n -s
cat <<EOF

Servers (\`$OLD\` built in a separate worktree: \`git worktree add /tmp/cc-old $OLD && cd /tmp/cc-old && cargo build --release --bin chatserver\`):

$(server cmp-old-1)
$(server cmp-new-1)

Bench (the same for every round and binary):

$(cmd compare-new-1)

### Acknowledged sends (v2, cid, resend), SQLite and MariaDB

\`one --ack\`: every user logs in with v2; each message carries a cid (\`"<step>:<seq>:<due_ns>:"\`, unique
per sender) and counts as sent-and-acknowledged when its CHAT_MSG_ACK (16) with that cid comes back.
Messages still unacknowledged after 1 s (\`--ack-timeout\`) are written again with the same cid, during the
step and after it until the grace period ends, each resend of a message waiting twice as long as the one
before, up to 8 s (until 2026-12-07 every second: once acks took longer than that, the resends doubled the
load of a node already behind, and a step that fell into that spiral never came out of it); the server answers a resend of a committed message with its
first ack and does not deliver it again, so recipients must see no duplicates. Ack latency runs from the
message's due time to its first ack. A step passes when, beside the usual rules, at most 0.1 % stay
unacknowledged, ack p99 ≤ 200 ms and the acknowledged rate is ≥ 95 % of the offered one.

SQLite, a fresh node (sustained: **$(sustained ack-sqlite) msg/s**):

$(ack_table ack-sqlite)

$(server ack-sqlite)

$(cmd ack-sqlite)

MariaDB (the node of the MariaDB one-to-one run above; sustained: **$(sustained ack-mariadb) msg/s**):

$(ack_table ack-mariadb)

$(cmd ack-mariadb)

### A new device's sync

One user gets $(j sync-sqlite .peers) × $(j sync-sqlite .per_peer) messages: $(j sync-sqlite .peers) peers log in with v2 and pipeline theirs (each with a cid, at
most 256 unacknowledged per peer, resent after 1 s without an answer) while the user is logged in and
reads them live, so nothing waits in its offline list; then the user logs out. Timed: connect and v2 login
on a device never used before, CONVERSATIONS, then HISTORY (\`after\`, from 0, limit $(j sync-sqlite .page), one request in flight)
until every conversation is read to its \`last\`; the tool checks each position came once, in order.

| | |
|---|---|
| messages prepared (acknowledged) | $(j sync-sqlite .prepared) in $(num "$(j sync-sqlite .prepare_s)" 2) s ($(num "$(j sync-sqlite .prepare_msgs_per_s)" 0) msg/s; $(j sync-sqlite .prepare_resends) resends, $(j sync-sqlite .prepare_errors) errors) |
| received live by the user while prepared | $(j sync-sqlite .live_received) |
| login (connect to ack) | $(num "$(j sync-sqlite .login_ms)" 1) ms ($(j sync-sqlite .offline_at_login) offline messages) |
| CONVERSATIONS | $(num "$(j sync-sqlite .conversations_ms)" 1) ms, $(j sync-sqlite .conversations) conversations |
| HISTORY | $(num "$(j sync-sqlite .history_ms)" 1) ms for $(j sync-sqlite .history_requests) requests, $(j sync-sqlite .messages_read) messages |
| **whole sync** | **$(num "$SYNC_S" 3) s** (complete: $SYNC_OK; server CPU $(num "$(j sync-sqlite .server_cpu_s)" 2) s) |

$(server sync-sqlite)

$(cmd sync-sqlite)

### Bytes per stored message

The tool opens the node's SQLite file read-only and reads \`page_count × page_size\` (a read transaction
sees the WAL's committed pages, so no checkpoint is needed) before and after the messages, and divides the
growth by the messages acknowledged; the \`dbstat\` table splits it by table and index.

| run | messages | bytes before → after | bytes per message | without free pages | by table and index (bytes per message) |
|---|---:|---|---:|---:|---|
| sync-sqlite ($(j sync-sqlite .peers) conversations) | $(j sync-sqlite .storage.messages) | $(j sync-sqlite .storage.bytes_before) → $(j sync-sqlite .storage.bytes_after) | $(num "$BYTES_SYNC" 1) | $(num "$(j sync-sqlite .storage.used_bytes_per_msg)" 1) | $(storage_rows sync-sqlite) |
| ack-sqlite (random pairs) | $(j ack-sqlite .storage.messages) | $(j ack-sqlite .storage.bytes_before) → $(j ack-sqlite .storage.bytes_after) | $(num "$BYTES_ACK" 1) | $(num "$(j ack-sqlite .storage.used_bytes_per_msg)" 1) | $(storage_rows ack-sqlite) |
EOF
