#!/usr/bin/env bash
# The README's "Against LocalStack", checked: creates the queue, the dead-letter queue and the
# bucket on LocalStack, starts the `api-server` and `worker` binaries against it with the
# README's settings, signs up, signs in, takes a PDF report through to its presigned S3 link
# and downloads it.
#
#   scripts/localstack-walkthrough.sh [BIN_DIR] [OUT_DIR]
#
# - LocalStack: $QUIRE_TEST_LOCALSTACK_URL (scripts/test.sh starts one, see
#   scripts/lib/localstack.sh); its virtualenv's python (with boto3) creates the resources.
# - Postgres: a new database on $DATABASE_URL's server, dropped afterwards (needs psql).
# - BIN_DIR holds api-server and worker (default: the cargo target directory's debug/).
# Everything listens on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/localstack.sh

: "${QUIRE_TEST_LOCALSTACK_URL:?the LocalStack endpoint; run scripts/test.sh, or source scripts/lib/localstack.sh && localstack_start}"
: "${DATABASE_URL:?a Postgres server this script may create a database on}"
BIN_DIR=${1:-$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug}
OUT=${2:-$(mktemp -d /tmp/quire-localstack-walkthrough.XXXXXX)}
mkdir -p "$OUT"
localstack_install
PYTHON="$(localstack_venv_dir)/bin/python"

json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# ---- a database of its own -------------------------------------------------------------
ADMIN_URL=$DATABASE_URL
database="quire_localstack_walkthrough_$RANDOM$RANDOM"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $database" >/dev/null

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  echo "localstack walk-through: $*" >&2
  for log in "$OUT"/*.log; do echo "---- $log" >&2; tail -n 40 "$log" >&2; done
  exit 1
}

# ---- the README's steps ----------------------------------------------------------------
# No endpoint or credentials from the caller (such as the test command's moto) leak in.
unset AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_S3 AWS_PROFILE AWS_SESSION_TOKEN

export DATABASE_URL="${ADMIN_URL%/*}/$database"
export QUIRE_JWT_SECRET; QUIRE_JWT_SECRET=$(openssl rand -hex 32)
export AWS_ENDPOINT_URL=$QUIRE_TEST_LOCALSTACK_URL AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export QUIRE_QUEUE=sqs QUIRE_SQS_QUEUE_URL
QUIRE_SQS_QUEUE_URL=$("$PYTHON" scripts/localstack-resources.py) || fail "creating the queues and the bucket"
export QUIRE_STORAGE=s3 QUIRE_S3_BUCKET=quire-reports QUIRE_S3_FORCE_PATH_STYLE=true
API_PORT=$(free_port) WORKER_HEALTH_PORT=$(free_port)
export QUIRE_LISTEN=127.0.0.1:$API_PORT QUIRE_HEALTH_LISTEN=127.0.0.1:$WORKER_HEALTH_PORT
"$BIN_DIR/api-server" >"$OUT/api-server.log" 2>&1 &
pids+=($!)
"$BIN_DIR/worker" >"$OUT/worker.log" 2>&1 &
pids+=($!)
API="http://127.0.0.1:$API_PORT"

# Ready: the API reaches Postgres, the queue and the bucket.
for _ in $(seq 1 150); do
  curl -sf -o /dev/null "$API/readyz" && break
  sleep 0.2
done
curl -sf -o /dev/null "$API/readyz" || fail "the api-server is not ready at $API"

EMAIL="localstack-$RANDOM$RANDOM@example.com"
PASSWORD="correct horse battery"
post() { curl -sf -X POST "$API$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }
post /auth/signup "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null || fail "signup"
TOKEN=$(post /auth/signin "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json access_token) ||
  fail "signin"
AUTH=(-H "authorization: Bearer $TOKEN")
ID=$(post /reports '{"report_type":"profile","format":"pdf","parameters":{}}' "${AUTH[@]}" | json id) ||
  fail "POST /reports"

status=
for _ in $(seq 1 120); do
  status=$(curl -sf "$API/reports/$ID" "${AUTH[@]}" | json status) || fail "GET /reports/$ID"
  case $status in
    completed) break ;;
    failed|cancelled) fail "report $ID ended $status" ;;
  esac
  sleep 0.5
done
[[ $status == completed ]] || fail "report $ID still $status after 60 s"

# The link is presigned by S3 (LocalStack), and it serves the PDF.
LINK=$(curl -sf "$API/reports/$ID" "${AUTH[@]}" | json download_url)
[[ $LINK == "$QUIRE_TEST_LOCALSTACK_URL/quire-reports/"*X-Amz-Signature=* ]] ||
  fail "not a presigned LocalStack link: $LINK"
curl -sf -o "$OUT/profile.pdf" "$LINK" || fail "the presigned link failed: $LINK"
head -c 5 "$OUT/profile.pdf" | grep -q '%PDF-' || fail "profile.pdf is not a PDF"

# Both stop cleanly on SIGTERM.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || fail "process $pid did not stop cleanly"; done
pids=()
echo "localstack walk-through ok: $OUT/profile.pdf ($(wc -c <"$OUT/profile.pdf") bytes) from $LINK"
