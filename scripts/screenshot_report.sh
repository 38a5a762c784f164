#!/usr/bin/env bash
# Render an HTML backtest report in headless Chromium and save a PNG, to check it opens and looks right
# without a desktop. Usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
# Needs Debian's `chromium` package (apt-get install -y chromium). Exit 0 only if a PNG was written.
set -euo pipefail

report=${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}
out=${2:-/tmp/report.png}
size=${3:-1280,2000}
size=${size/x/,}

command -v chromium >/dev/null || { echo "$0: chromium is not installed (apt-get install -y chromium)" >&2; exit 2; }
[[ -f "$report" ]] || { echo "$0: no such report: $report" >&2; exit 2; }

profile=$(mktemp -d)          # a throwaway profile: no state leaks between runs
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$out"

# The report loads no external resource (its Content-Security-Policy forbids any) and its one inline script only
# draws a chart, so networking and background services stay off.
if ! timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --screenshot="$out" --window-size="$size" "file://$(realpath "$report")" >"$log" 2>&1; then
  cat "$log" >&2
  echo "$0: chromium failed on $report" >&2
  exit 1
fi
if [[ ! -s "$out" ]]; then
  cat "$log" >&2
  echo "$0: chromium wrote no screenshot" >&2
  exit 1
fi
echo "$out"
