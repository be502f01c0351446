#!/usr/bin/env bash
# Install what the tests need and run them. Extra arguments go to pytest (e.g. -k profiles).
#
# The tests run on several workers at once (pytest-xdist; KUBESTUDIO_TEST_WORKERS, default: the
# machine's cores, at least 2 and at most 4; 0 runs them in this process). A module's tests stay
# on one worker, since they share its hub or registry, and all of tests/kubebench on one, since they
# share the bench (tests/conftest.py). Prints how long each phase took.
set -euo pipefail
cd "$(dirname "$0")/.."

phase_started=$(date +%s)
phases=()
phase_done() {
  local now; now=$(date +%s)
  phases+=("$1 $(( now - phase_started ))s")
  phase_started=$now
}
report_phases() { [ ${#phases[@]} -eq 0 ] || printf '[test.sh] phase times: %s\n' "${phases[*]}" >&2; }
trap report_phases EXIT

# The bench's control plane is built from Debian's sources (minutes of Go compiling on a new
# machine, nothing once cached): in the background while the installs below download and unpack.
bench_pid=""
bench_log=""
if [ -z "${KUBESTUDIO_TEST_KUBECONFIG:-}" ]; then
  bench_log=$(mktemp "${TMPDIR:-/tmp}/kubebench-build.XXXXXX")
  bash kubestudio/testing/kubebench/build.sh >"$bench_log" 2>&1 &
  bench_pid=$!
fi

if ! bash scripts/install.sh --test; then
  [ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null || true
  exit 1
fi
phase_done installs
if [ -n "$bench_pid" ]; then
  if ! wait "$bench_pid"; then
    cat "$bench_log" >&2
    printf '[test.sh] the Kubernetes test bench could not be built (its log is above)\n' >&2
    rm -f "$bench_log"
    exit 1
  fi
  grep -h '^\[kubebench build\]' "$bench_log" >&2 || true
  rm -f "$bench_log"
  phase_done bench-build-wait
fi

export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
workers="${KUBESTUDIO_TEST_WORKERS:-}"
if [ -z "$workers" ]; then
  workers=$(nproc 2>/dev/null || echo 2)
  [ "$workers" -ge 2 ] || workers=2
  [ "$workers" -le 4 ] || workers=4
fi
parallel=()
[ "$workers" = 0 ] || parallel=(-n "$workers" --dist loadscope)  # tests/conftest.py: the units
status=0
.venv/bin/python -m pytest "${parallel[@]}" "$@" || status=$?
phase_done tests
exit $status
