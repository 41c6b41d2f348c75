#!/usr/bin/env bash
# The waiter benchmark (api-server/benches/waiters.rs): 1,000 requests held by
# `Prefer: wait=60` on a throwaway Postgres; prints their memory, CPU and database
# connections while held and how fast they are answered. Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/postgres.sh
if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_start_throwaway
  trap pg_stop_throwaway EXIT
fi
cargo bench --profile dev --workspace --bench waiters "$@"
