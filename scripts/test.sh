#!/usr/bin/env bash
# The whole test suite, on a fresh machine: one command.
#
#   scripts/test.sh [extra cargo test args]
#
# - Uses $DATABASE_URL when set; otherwise starts a throwaway Postgres from the installed
#   binaries (initdb refuses to run as root, so as the `postgres` user) and removes it after.
# - Runs cargo fmt --check, clippy with warnings denied, and every test in the workspace.
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

# ---- checks and tests -----------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
