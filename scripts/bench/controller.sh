#!/usr/bin/env bash
# The controller at scale (controller/benches/reconcile_10k.rs): 10,000 ReportRequests
# reconciled by the controller binary against the fake Kubernetes API and a throwaway
# Postgres. Prints the time to converge and the controller's peak RSS.
# QUIRE_BENCH_REQUESTS=N changes the count. Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/postgres.sh
if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_start_throwaway
  trap pg_stop_throwaway EXIT
fi
cargo bench --profile dev --workspace --bench reconcile_10k "$@"
