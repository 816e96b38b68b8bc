#!/usr/bin/env bash
# Rewrites, in place, the section "The durable log (issue 10)" of docs/BENCHMARKS.md from RESULTS_DIR
# (bench/durable-report.sh; placed before "## Reproducing" when it is not there yet), and the notes by
# hand at the end of the page from bench/notes.md: durable-splice.sh RESULTS_DIR. Used by
# `DURABLE_ONLY=1 bash bench/run.sh`; safe to run again after editing bench/notes.md.
set -euo pipefail
cd "$(dirname "$0")/.."
R=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash bench/durable-report.sh "$R" >"$tmp/section.md"
notes_head=$(head -1 bench/notes.md)
awk -v section="$tmp/section.md" -v notes_head="$notes_head" '
    function put() { while ((getline line < section) > 0) print line; print ""; done = 1 }
    $0 == notes_head { exit }
    /^## The durable log \(issue 10\)/ { put(); skip = 1; next }
    skip && /^## / { skip = 0 }
    !skip && !done && /^## Reproducing/ { put() }
    !skip { print }' docs/BENCHMARKS.md >"$tmp/page.md"
# The page ends with the notes, after one blank line.
sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$tmp/page.md" >"$tmp/trimmed.md"
{ cat "$tmp/trimmed.md"; echo; cat bench/notes.md; } >docs/BENCHMARKS.md
