# shellcheck shell=bash
# Starts and stops a throwaway LocalStack (a second AWS API emulator: SQS, S3) beside moto,
# so the SQS and S3 tests run against both. Sourced by scripts/test.sh, which calls
# `localstack_start_until_exit`; usable by hand: `source scripts/lib/localstack.sh;
# localstack_start`, then `localstack_stop`.
#
# LocalStack runs on the host, without Docker: `localstack-core` from PyPI in a virtualenv
# under ~/.cache/quire (made on the first run, reused after), started as
# `python -m localstack.runtime.main` on a free loopback port with its files in a temporary
# directory and nothing persisted, so every run starts empty. Nothing is started when
# QUIRE_TEST_LOCALSTACK_URL is already set: the tests then use that endpoint.
#
# The virtualenv's python also has boto3 (LocalStack needs it), which
# scripts/localstack-walkthrough.sh uses to create queues and buckets.

# The newest LocalStack that runs on Python 3.11, and the pins it needs there (later cbor2,
# pyopenssl and localstack-twisted releases break it).
LOCALSTACK_VERSION=4.13.1
LOCALSTACK_PINS=("cbor2<6" "pyopenssl<26" "localstack-twisted<26")

localstack_log() { printf '==> %s\n' "$*" >&2; }

localstack_venv_dir() {
  echo "${QUIRE_LOCALSTACK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/quire/localstack-venv}"
}

# Makes (or updates) the virtualenv so that it holds localstack-core $LOCALSTACK_VERSION with
# the runtime for SQS and S3 (the `base-runtime` extra, about 190 MB).
localstack_install() {
  local venv; venv=$(localstack_venv_dir)
  if [[ $("$venv/bin/python" -c \
        'import importlib.metadata as m; print(m.version("localstack-core"))' 2>/dev/null) \
        == "$LOCALSTACK_VERSION" ]]; then
    return 0
  fi
  localstack_log "installing LocalStack $LOCALSTACK_VERSION into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "localstack-core[base-runtime]==$LOCALSTACK_VERSION" "${LOCALSTACK_PINS[@]}" >&2
}

# Seconds since $1 (an $EPOCHREALTIME), to one decimal.
localstack_since() {
  python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$1"
}

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# True when LocalStack at $1 reports both SQS and S3 as available (or running).
localstack_healthy() {
  curl -sf "$1/_localstack/health" 2>/dev/null | python3 -c '
import json, sys
services = json.load(sys.stdin)["services"]
sys.exit(0 if all(services.get(s) in ("available", "running") for s in ("sqs", "s3")) else 1)
' 2>/dev/null
}

# Sets LOCALSTACK_PID, LOCALSTACK_DIR (its files and log) and exports
# QUIRE_TEST_LOCALSTACK_URL.
localstack_start() {
  if [[ -n "${QUIRE_TEST_LOCALSTACK_URL:-}" ]]; then
    localstack_log "LocalStack: using QUIRE_TEST_LOCALSTACK_URL=$QUIRE_TEST_LOCALSTACK_URL"
    return 0
  fi
  local started=$EPOCHREALTIME
  localstack_install || return 1
  local venv port url
  venv=$(localstack_venv_dir)
  port=$(free_port)
  url="http://127.0.0.1:$port"
  LOCALSTACK_DIR=$(mktemp -d /tmp/quire-localstack.XXXXXX)
  # - OVERRIDE_IN_DOCKER=0: it runs on the host, not in its container; DNS_ADDRESS=0: no DNS
  #   server; SKIP_SSL_CERT_DOWNLOAD=1: no certificate download (a self-signed one is used).
  # - GATEWAY_SERVER=hypercorn binds only GATEWAY_LISTEN's loopback address (the default
  #   server binds 0.0.0.0 whatever it says) but sometimes ignores SIGTERM: see localstack_stop.
  # - SQS_ENDPOINT_STRATEGY=path: queue URLs are $url/<account>/<name>, reachable as they are.
  # - S3_SKIP_SIGNATURE_VALIDATION=0: presigned links are checked (signature and expiry) as
  #   S3 does; LocalStack skips that by default.
  (
    cd "$LOCALSTACK_DIR" &&
    exec env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$LOCALSTACK_DIR/root" \
      GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
      GATEWAY_SERVER=hypercorn SERVICES=sqs,s3 SQS_ENDPOINT_STRATEGY=path \
      S3_SKIP_SIGNATURE_VALIDATION=0 PERSISTENCE=0 DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 \
      DISABLE_EVENTS=1 \
      "$venv/bin/python" -m localstack.runtime.main
  ) >"$LOCALSTACK_DIR/localstack.log" 2>&1 &
  LOCALSTACK_PID=$!
  local _
  for _ in $(seq 1 300); do
    if localstack_healthy "$url"; then
      export QUIRE_TEST_LOCALSTACK_URL=$url
      localstack_log "LocalStack $LOCALSTACK_VERSION at $url ($(localstack_since "$started") s to install and start)"
      return 0
    fi
    if ! kill -0 "$LOCALSTACK_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "LocalStack did not come up at $url; its log:" >&2
  cat "$LOCALSTACK_DIR/localstack.log" >&2
  localstack_stop
  return 1
}

# Stops the LocalStack started here: SIGTERM, then SIGKILL if it has not exited within 5 s.
localstack_stop() {
  [[ -n "${LOCALSTACK_PID:-}" ]] || return 0
  kill -TERM "$LOCALSTACK_PID" 2>/dev/null || true
  local _
  for _ in $(seq 1 50); do
    kill -0 "$LOCALSTACK_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$LOCALSTACK_PID" 2>/dev/null; then
    localstack_log "LocalStack ignored SIGTERM; killing it"
    kill -KILL "$LOCALSTACK_PID" 2>/dev/null || true
  fi
  wait "$LOCALSTACK_PID" 2>/dev/null || true
  rm -rf "$LOCALSTACK_DIR"
  unset LOCALSTACK_PID LOCALSTACK_DIR QUIRE_TEST_LOCALSTACK_URL
}

# localstack_start, and localstack_stop when the shell exits (before whatever EXIT trap was
# already set, such as scripts/test.sh's Postgres and moto ones).
localstack_start_until_exit() {
  localstack_start || return 1
  [[ -n "${LOCALSTACK_PID:-}" ]] || return 0
  local previous
  eval "set -- $(trap -p EXIT)"
  previous=${3:-}
  # shellcheck disable=SC2064 # expanded now on purpose: the trap that was set until now
  trap "localstack_stop${previous:+; $previous}" EXIT
}
