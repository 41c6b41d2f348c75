#!/usr/bin/env bash
# The whole test suite, on a fresh machine: one command.
#
#   scripts/test.sh [extra cargo test args]
#
# - Uses $DATABASE_URL when set; otherwise starts a throwaway Postgres from the installed
#   binaries (initdb refuses to run as root, so as the `postgres` user) and removes it after.
# - Uses $AWS_ENDPOINT_URL when set; otherwise installs moto (an AWS API emulator, from PyPI)
#   into a virtualenv under ~/.cache/quire and runs it on a free loopback port for the SQS
#   and S3 tests; each test makes its own queue and bucket.
# - Likewise LocalStack, the second emulator every SQS and S3 test also runs against: uses
#   $QUIRE_TEST_LOCALSTACK_URL when set; otherwise installs it (localstack-core, from PyPI,
#   no Docker) into a virtualenv under ~/.cache/quire and runs it on a free loopback port.
# - Runs cargo fmt --check, clippy with warnings denied, the README's walk-throughs (against
#   `quire dev`, and against LocalStack with the api-server and worker binaries), the API's
#   contract (scripts/api-contract.sh: OpenAPI validation, schemathesis, the docs page in
#   headless Chromium; installs schemathesis from PyPI and Debian's chromium when missing)
#   and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# ---- a throwaway Postgres -------------------------------------------------------------
if [[ -z "${DATABASE_URL:-}" ]]; then
  source scripts/lib/postgres.sh
  pg_start_throwaway
  trap pg_stop_throwaway EXIT
fi
log "Postgres: ${DATABASE_URL%%@*}@…"

# ---- throwaway AWS API emulators: moto and LocalStack -----------------------------------
source scripts/lib/moto.sh
moto_start_until_exit
source scripts/lib/localstack.sh
localstack_start_until_exit

# ---- checks and tests -----------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# ---- build once ---------------------------------------------------------------------
# Every test target and binary in one build: a plain `cargo build` resolves dependency
# features without the dev-dependencies and so would build many dependencies a second time.
log "cargo test --no-run"
cargo test --workspace --locked --no-run

# ---- the README's walk-through against the real `quire dev` binary ---------------------
log "walk-through against quire dev"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d /tmp/quire-walkthrough.XXXXXX)
port=$(free_port)
"$target_dir/debug/quire" dev --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/quire.log" 2>&1 &
quire_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done
if ! scripts/walkthrough.sh "http://127.0.0.1:$port" "$work"; then
  cat "$work/quire.log" >&2
  kill "$quire_pid" 2>/dev/null || true
  exit 1
fi
kill -INT "$quire_pid"
wait "$quire_pid" || { echo "quire dev did not stop cleanly after Ctrl-C" >&2; cat "$work/quire.log" >&2; exit 1; }
grep -q "Quire is listening on http://127.0.0.1:$port" "$work/quire.log"
rm -rf "$work"

# ---- the README's walk-through against LocalStack: api-server and worker binaries --------
log "walk-through against LocalStack"
# api-server and worker were built by `cargo test --no-run` above (their packages have
# integration tests, so cargo builds their binaries with the same features).
scripts/localstack-walkthrough.sh "$target_dir/debug"

# ---- the API's contract: OpenAPI validation, schemathesis and the docs page in Chromium ---
log "API contract against quire dev"
scripts/api-contract.sh "$target_dir/debug/quire"

# ---- the Helm chart, offline: lint, render, validate against the Kubernetes schemas ------
source scripts/lib/chart.sh
chart_check

log "cargo test"
results=$(mktemp)
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$results" || status=$?
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, i }' "$results"
rm -f "$results"
exit "$status"
