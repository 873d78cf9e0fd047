#!/usr/bin/env bash
# The soak: mixed traffic against one server for minutes (streaming and not, n > 1, tools,
# embeddings, disconnects mid-stream and while queued, unload/reload, keep-alive expiry), then
# every request accounted for, slots idle, queues empty, RSS growth < 5%, fds back to baseline.
# Usage: scripts/soak.sh [SECONDS] (default 600 of load, after a 20 s warm-up).
# Prints the test's figures, then one verdict line that compares the settled state after the
# warm-up with the settled state at the end (RSS within 5%, no more open fds), e.g.
#   soak verdict: PASS: 600 s of load on AMD EPYC, 2 CPUs; 4242 requests, 0 unaccounted; RSS 310 -> 312 MiB (+0.6%, limit +5%); fds 41 -> 41
# and exits non-zero unless it says PASS.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export MR_SOAK_SECONDS="${1:-600}"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs"
status=0
timeout $((MR_SOAK_SECONDS + 600)) python -m pytest -q -s -p no:cacheprovider tests/server/test_soak.py \
  2>&1 | tee "$LOG" || status=$?

# The test prints: soak: N requests ({...}), F faults injected, RSS A -> B MiB (+G%),
# fds X -> Y (new: {...}), unaccounted U
summary="$(grep -E '^soak: [0-9]+ requests' "$LOG" | tail -n 1 || true)"
if [[ -z "$summary" ]]; then
  echo "soak verdict: FAIL: no figures (the test stopped before the end: see above); $MR_SOAK_SECONDS s on $CPU"
  exit 1
fi
read -r requests rss_a rss_b growth fds_a fds_b unaccounted < <(sed -E \
  's/^soak: ([0-9]+) requests.*RSS ([0-9]+) -> ([0-9]+) MiB \(([-+0-9.]+)%\), fds ([0-9]+) -> ([0-9]+) .*unaccounted ([0-9]+)$/\1 \2 \3 \4 \5 \6 \7/' \
  <<<"$summary")
verdict=PASS
awk -v g="$growth" 'BEGIN { exit !(g < 5.0) }' || verdict=FAIL
(( fds_b <= fds_a && unaccounted == 0 && status == 0 )) || verdict=FAIL
echo "soak verdict: $verdict: $MR_SOAK_SECONDS s of load on $CPU; $requests requests, $unaccounted unaccounted;" \
  "RSS $rss_a -> $rss_b MiB (${growth}%, limit +5%); fds $fds_a -> $fds_b (test exit $status)"
[[ $verdict == PASS ]]
