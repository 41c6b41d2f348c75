#!/usr/bin/env bash
# The status-read benchmark (api-server/benches/status_read.rs): GET /reports/{id} at 64
# connections beside `pgbench -S` on the same throwaway Postgres. Prints both rates, the
# ratio and the API's p50/p99. The API's load generator is wrk (Debian's package, installed
# here when missing). Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null; then
  echo "installing Debian's wrk (the load generator)" >&2
  sudo_=(); [[ $(id -u) == 0 ]] || sudo_=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_[@]}" apt-get install -y -q wrk >/dev/null ||
    { "${sudo_[@]}" apt-get update -q >/dev/null && "${sudo_[@]}" apt-get install -y -q wrk >/dev/null; }
fi
source scripts/lib/postgres.sh
if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_start_throwaway
  trap pg_stop_throwaway EXIT
fi
cargo bench --profile dev --workspace --bench status_read "$@"
