#!/usr/bin/env bash
# The status-read benchmark (api-server/benches/status_read.rs): GET /reports/{id} at 64
# connections beside `pgbench -S` on the same throwaway Postgres. Prints both rates, the
# ratio and the API's p50/p99. Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/postgres.sh
if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_start_throwaway
  trap pg_stop_throwaway EXIT
fi
cargo bench --profile dev --workspace --bench status_read "$@"
