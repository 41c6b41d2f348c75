#!/usr/bin/env bash
# Quire's chaos benchmark (issue 9): api-server + 2 workers on Postgres, SQS and S3 (moto),
# 1,000 reports while workers are SIGKILLed, then two Postgres restarts and an SQS/S3 black
# hole. Takes ~7 minutes, so it is not part of scripts/test.sh.
#
#   scripts/bench/chaos.sh            # the benchmark
#   scripts/bench/chaos.sh --short    # a ~1.5-minute smoke version
#   scripts/bench/chaos.sh --help     # every option
#
# - Starts a throwaway Postgres (scripts/lib/postgres.sh), which the harness stops and starts
#   again for the outages, and removes it after.
# - Installs moto into its virtualenv (scripts/lib/moto.sh) and runs the harness
#   (scripts/bench/chaos.py) with that virtualenv's python, for boto3.
# - Runs api-server and worker from cargo's target directory ($CARGO_TARGET_DIR, else
#   `cargo metadata`), building them first if they are missing.
# The figures end with a TARGET MET / TARGET MISSED line and one `CHAOS_RESULT {json}` line;
# the processes' logs stay in the directory printed at the start and the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*" >&2; }

profile=auto given_binaries=0
prev=
for arg in "$@"; do
  case $arg in
    -h|--help) exec python3 scripts/bench/chaos.py --help ;;
    --profile=*) profile=${arg#--profile=} ;;
    --api-server|--api-server=*|--worker|--worker=*) given_binaries=$((given_binaries + 1)) ;;
  esac
  [[ $prev == --profile ]] && profile=$arg
  prev=$arg
done

source scripts/lib/postgres.sh
source scripts/lib/moto.sh

# ---- the binaries ----------------------------------------------------------------------
source scripts/bench/lib.sh
bench_binaries "$profile" "$given_binaries"

# ---- moto and Postgres -------------------------------------------------------------------
moto_install
pg_start_throwaway
trap pg_stop_throwaway EXIT
log "Postgres in $PG_DIR on port $PG_PORT"

# Not exec'd: the EXIT trap removes Postgres once the harness is done. Ctrl-C or SIGTERM is
# passed on to the harness, which stops its processes; then the script exits with its status.
QUIRE_CHAOS_PG_DIR=$PG_DIR QUIRE_CHAOS_PG_BIN=$PG_BIN \
  "$(moto_venv_dir)/bin/python" scripts/bench/chaos.py --target-dir "$target_dir" \
  --moto-venv "$(moto_venv_dir)" "$@" &
harness=$!
trap 'kill -TERM "$harness" 2>/dev/null || true' INT TERM
while :; do
  # Returns early (above 128) when a signal was trapped; the harness then still runs.
  wait "$harness" && status=0 || status=$?
  kill -0 "$harness" 2>/dev/null || break
done
exit "$status"
