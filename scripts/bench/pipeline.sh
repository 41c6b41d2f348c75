#!/usr/bin/env bash
# Quire's pipeline throughput benchmark: api-server + 2 workers over Postgres, SQS and S3 on an
# AWS emulator, 1,000 profile PDF reports created as fast as 32 client threads can, no faults.
# Prints reports/s, emulator requests per report (by SQS action and S3 operation), the
# emulator's own SendMessage and PutObject rates, and peak RSS.
#
#   scripts/bench/pipeline.sh                          # moto, then LocalStack, then a summary
#   scripts/bench/pipeline.sh --emulator moto          # one emulator (or localstack)
#   scripts/bench/pipeline.sh --reports 100            # a quick run
#   scripts/bench/pipeline.sh --help                   # every option
#
# For each emulator, one after the other: a throwaway Postgres (scripts/lib/postgres.sh) and
# the emulator (scripts/lib/moto.sh or scripts/lib/localstack.sh, installed into their
# virtualenvs when missing), the harness (scripts/bench/pipeline.py, with moto's virtualenv's
# python for boto3), then both are removed. Runs api-server and worker from cargo's target
# directory ($CARGO_TARGET_DIR, else `cargo metadata`), building them only if they are missing.
# Each run prints its block and a `PIPELINE_RESULT {json}` line; then a summary table.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*" >&2; }

emulators=(moto localstack) profile=auto given_binaries=0
args=() prev=
for arg in "$@"; do
  if [[ $prev == --emulator ]]; then
    emulator=$arg
  else
    case $arg in
      -h|--help) exec python3 scripts/bench/pipeline.py --help ;;
      --emulator) ;;
      --emulator=*) emulator=${arg#--emulator=} ;;
      *) args+=("$arg") ;;
    esac
    case $arg in
      --profile=*) profile=${arg#--profile=} ;;
      --api-server|--api-server=*|--worker|--worker=*) given_binaries=$((given_binaries + 1)) ;;
    esac
    [[ $prev == --profile ]] && profile=$arg
  fi
  prev=$arg
done
case ${emulator:-both} in
  both) ;;
  moto|localstack) emulators=("$emulator") ;;
  *) echo "--emulator must be moto, localstack or both" >&2; exit 2 ;;
esac

# Throwaway emulators only: never an endpoint from the environment.
unset AWS_ENDPOINT_URL QUIRE_TEST_LOCALSTACK_URL
source scripts/lib/postgres.sh
source scripts/lib/moto.sh
source scripts/lib/localstack.sh

# ---- the binaries ----------------------------------------------------------------------
source scripts/bench/lib.sh
bench_binaries "$profile" "$given_binaries"

# ---- the emulators' virtualenvs ------------------------------------------------------------
moto_install
for e in "${emulators[@]}"; do [[ $e == localstack ]] && localstack_install; done
python=$(moto_venv_dir)/bin/python

results=$(mktemp -d /tmp/quire-pipeline-results.XXXXXX)
harness='' interrupted=0
stop_all() {
  if [[ -n $harness ]] && kill -0 "$harness" 2>/dev/null; then
    kill -TERM "$harness" 2>/dev/null || true
    wait "$harness" 2>/dev/null || true
  fi
  harness=
  localstack_stop
  moto_stop
  unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  pg_stop_throwaway
  unset PG_DIR
}
trap 'stop_all; rm -rf "$results"' EXIT
trap 'interrupted=1; [[ -n $harness ]] && kill -TERM "$harness" 2>/dev/null; true' INT TERM

files=()
for e in "${emulators[@]}"; do
  ((interrupted)) && break
  pg_start_throwaway
  log "Postgres in $PG_DIR on port $PG_PORT"
  case $e in
    moto)
      moto_start
      endpoint=$AWS_ENDPOINT_URL pid=$MOTO_PID version=$MOTO_VERSION key=testing ;;
    localstack)
      localstack_start
      endpoint=$QUIRE_TEST_LOCALSTACK_URL pid=$LOCALSTACK_PID version=$LOCALSTACK_VERSION key=test ;;
  esac
  ((interrupted)) && break
  log "benchmark on $e $version at $endpoint"
  # Not exec'd: Ctrl-C or SIGTERM is passed on to the harness, which stops its processes;
  # then stop_all removes the emulator and Postgres.
  QUIRE_PIPELINE_PSQL=$PG_BIN/psql \
    "$python" scripts/bench/pipeline.py --target-dir "$target_dir" --emulator "$e" \
    --emulator-version "$version" --endpoint "$endpoint" --emulator-pid "$pid" \
    --access-key "$key" --secret-key "$key" --result-file "$results/$e.json" \
    ${args[@]+"${args[@]}"} &
  harness=$!
  while :; do
    # Returns early (above 128) when a signal was trapped; the harness then still runs.
    wait "$harness" && status=0 || status=$?
    kill -0 "$harness" 2>/dev/null || break
  done
  harness=
  stop_all
  ((interrupted)) && exit 130
  if [[ -s $results/$e.json ]]; then
    files+=("$results/$e.json")
  else
    log "no result from the $e run (exit status $status)"
  fi
done
((interrupted)) && exit 130
((${#files[@]})) || exit 1
"$python" scripts/bench/pipeline.py --summary "${files[@]}"
