#!/usr/bin/env bash
# Puts a benchmark run's Markdown report (bench.sh --markdown FILE) into the
# docs, so the figures there are the run's, not retyped:
#   - the whole report between the bench-results markers of docs/benchmarks.md
#   - its rows at 64 in flight and its targets between the same markers of README.md
# Usage: bash scripts/bench-docs.sh benches/results/<date>-uncached.md
set -euo pipefail
cd "$(dirname "$0")/.."

report="${1:?usage: scripts/bench-docs.sh REPORT.md}"
[ -f "$report" ] || { echo "no such report: $report" >&2; exit 2; }

# Replaces the lines between <!-- bench-results:begin --> and
# <!-- bench-results:end --> of file $1 with the contents of file $2.
splice() {
    local file="$1" content="$2"
    grep -q '<!-- bench-results:begin -->' "$file" || { echo "$file has no bench-results markers" >&2; exit 1; }
    awk -v content="$content" '
        /<!-- bench-results:begin -->/ { print; while ((getline line < content) > 0) print line; skipping = 1; next }
        /<!-- bench-results:end -->/ { skipping = 0 }
        !skipping { print }
    ' "$file" > "$file.new"
    mv "$file.new" "$file"
}

whole="$(mktemp)"
targets="$(mktemp)"
trap 'rm -f "$whole" "$targets"' EXIT
{ echo; echo "From \`$report\`:"; echo; cat "$report"; echo; } > "$whole"
{
    echo
    echo "From \`$report\` (the whole run, with where the time goes: [docs/benchmarks.md](docs/benchmarks.md)):"
    echo
    # The load table's header and its rows at 64 in flight, then the targets.
    awk '/^\| in flight \|/ { print; getline; print } /^\| 64 \|/ { print }' "$report"
    echo
    awk '/^\| target \|/ { on = 1 } on && !/^\|/ { exit } on { print }' "$report"
    echo
} > "$targets"
splice docs/benchmarks.md "$whole"
splice README.md "$targets"
echo "docs/benchmarks.md and README.md now show $report"
