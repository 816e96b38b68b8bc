# Helpers of the bench/*report.sh scripts (sourced): jq look-ups into the JSON lines of
# chat-bench in $R, rounding, ratios against targets, and the step table of a sweep.

# j FILE FILTER: a jq filter over one result (raw output), "n/a" when missing or null.
j() {
    local f=$R/$1.json
    [ -s "$f" ] || { echo n/a; return; }
    local v
    v=$(jq -r "$2" "$f" 2>/dev/null || true)
    if [ -z "$v" ] || [ "$v" = null ]; then echo n/a; else echo "$v"; fi
}

# step FILE RATE FIELD: a field of the step at RATE.
step() { j "$1" "[.steps[] | select(.rate == $2) | .$3][0]"; }

# num VALUE DECIMALS: rounds, keeping "n/a".
num() {
    case $1 in n/a) echo n/a ;; *) LC_ALL=C printf "%.${2}f" "$1" ;; esac
}

# val VALUE DECIMALS UNIT: a rounded value with its unit, or "n/a".
val() {
    case $1 in n/a) echo n/a ;; *) echo "$(num "$1" "$2") $3" ;; esac
}

# ge FILE: "≥ " when every step of the sweep passed (the real limit is above the highest rate offered).
ge() {
    [ -s "$R/$1.json" ] && jq -e '[.steps[] | select(.passed | not)] | length == 0' "$R/$1.json" >/dev/null && echo "≥ " || true
}

# ratio MEASURED TARGET higher|lower: >= 1.00 meets the target.
ratio() {
    local m=$1 t=$2 dir=$3
    case $m in n/a | 0 | 0.0*) [ "$m" = n/a ] && { echo n/a; return; } ;; esac
    if [ "$dir" = higher ]; then
        LC_ALL=C awk -v m="$m" -v t="$t" 'BEGIN { printf "%.2f", m / t }'
    else
        LC_ALL=C awk -v m="$m" -v t="$t" 'BEGIN { if (m == 0) print "∞"; else printf "%.2f", t / m }'
    fi
}

verdict() {
    case $1 in
    n/a) echo "not measured" ;;
    ≥*) LC_ALL=C awk -v r="${1#≥ }" 'BEGIN { print (r >= 1 ? "meets" : "open: every offered rate passed") }' ;;
    *) LC_ALL=C awk -v r="$1" 'BEGIN { print (r >= 1 ? "meets" : "misses") }' ;; esac
}

cmd() { [ -s "$R/$1.cmd" ] && sed 's/^/    /' "$R/$1.cmd" || echo "    (not run)"; }
server() { [ -s "$R/$1.server.txt" ] && sed 's/^/    /' "$R/$1.server.txt" || echo "    (not run)"; }

# steps_table FILE: one row per load step.
steps_table() {
    local f=$R/$1.json
    [ -s "$f" ] || { echo "(no result: the run failed, see the make bench output)"; return; }
    echo "| offered msg/s | achieved | deliveries expected | received | loss % | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU µs/delivery | ctx switches/delivery | bench CPU s | other CPU s | passed |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
    jq -r 'def r(n): if . == null then "n/a" else (. * pow(10; n) | round) / pow(10; n) | tostring end;
        .steps[] | "| \(.rate | r(0)) | \(.achieved | r(0)) | \(.expected) | \(.received) | \(.loss_pct | r(3)) | \(.deliveries_per_s | r(0)) | \(.p50_ms | r(2)) | \(.p90_ms | r(2)) | \(.p99_ms | r(2)) | \(.p999_ms | r(2)) | \(.max_ms | r(1)) | \(.errors_total) | \(.server_cpu_us_per_msg | r(1)) | \(.ctx_switches_per_msg | r(2)) | \(.bench_cpu_s | r(1)) | \(.other_cpu_s | r(1)) | \(if .passed then "yes" else "no" end) |"' "$f"
}

# A sustained rate, or "none" / "n/a"; a sweep whose every step passed is marked "≥".
sustained() {
    local f=$R/$1.json
    [ -s "$f" ] || { echo n/a; return; }
    jq -r 'if .max_sustained_rate == null then "none"
           elif ([.steps[] | select(.passed | not)] | length) == 0 then "≥ \(.max_sustained_rate)"
           else "\(.max_sustained_rate)" end' "$f"
}
sustained_num() { j "$1" '.max_sustained_rate // 0'; }

# other FILE RATE: CPU seconds other processes took during that step ("n/a" without a step).
other() { num "$(step "$1" "$2" other_cpu_s)" 1; }

target_row() { # what, target, measured (shown), ratio, source, other CPU s during the step
    echo "| $1 | $2 | $3 | $4 | $(verdict "$4") | $5 | ${6:-} |"
}

# splice_section TITLE FILE: puts FILE in docs/BENCHMARKS.md in place of the section whose heading line is
# TITLE (up to the next "## " heading), or, the first time, right before the notes by hand that end the
# page (they come from bench/notes.md, so bench/durable-splice.sh keeps the section).
splice_section() {
    local title=$1 section=$2 page
    page=$(mktemp)
    awk -v section="$section" -v notes_head="$(head -1 bench/notes.md)" -v title="$title" '
        function put() { while ((getline line < section) > 0) print line; print ""; done = 1 }
        $0 == title { put(); skip = 1; next }
        skip && /^## / { skip = 0 }
        !skip && !done && $0 == notes_head { put() }
        !skip { print }
        END { if (!done) { print ""; put() } }' docs/BENCHMARKS.md >"$page"
    cp "$page" docs/BENCHMARKS.md
    rm -f "$page"
}
