# shellcheck shell=bash
# Starts and stops a throwaway moto server (an AWS API emulator: SQS, S3) for the SQS and S3
# contract suites. Sourced by scripts/test.sh, which calls `moto_start_until_exit`; usable by
# hand: `source scripts/lib/moto.sh; moto_start`, then `moto_stop`.
#
# moto lives in a virtualenv under ~/.cache/quire, made on the first run and reused after;
# the server listens on a free loopback port and keeps its state in memory, so every run
# starts empty. Nothing is started when AWS_ENDPOINT_URL is already set: the tests then use
# whatever endpoint (and credentials) the caller chose.

MOTO_VERSION=5.2.5

moto_log() { printf '==> %s\n' "$*" >&2; }

moto_venv_dir() {
  echo "${QUIRE_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/quire/moto-venv}"
}

# Makes (or updates) the virtualenv so that it holds moto $MOTO_VERSION with its server.
moto_install() {
  local venv; venv=$(moto_venv_dir)
  if [[ -x "$venv/bin/moto_server" ]] &&
     [[ $("$venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null) == "$MOTO_VERSION" ]]; then
    return 0
  fi
  moto_log "installing moto $MOTO_VERSION into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
}

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# Sets MOTO_PID, MOTO_LOG and exports AWS_ENDPOINT_URL, AWS_REGION and test credentials.
moto_start() {
  if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
    moto_log "AWS: using AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
    return 0
  fi
  moto_install || return 1
  local venv port url
  venv=$(moto_venv_dir)
  port=$(free_port)
  url="http://127.0.0.1:$port"
  MOTO_LOG=$(mktemp /tmp/quire-moto.XXXXXX.log)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  local _
  for _ in $(seq 1 150); do
    if curl -sf -o /dev/null "$url/moto-api/"; then
      export AWS_ENDPOINT_URL=$url
      export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
      export AWS_ACCESS_KEY_ID=testing
      export AWS_SECRET_ACCESS_KEY=testing
      moto_log "AWS: moto $MOTO_VERSION at $url"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "moto_server did not come up at $url; its log:" >&2
  cat "$MOTO_LOG" >&2
  moto_stop
  return 1
}

moto_stop() {
  [[ -n "${MOTO_PID:-}" ]] || return 0
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
  rm -f "$MOTO_LOG"
  unset MOTO_PID MOTO_LOG
}

# moto_start, and moto_stop when the shell exits (after whatever EXIT trap was already set,
# such as scripts/test.sh's Postgres one).
moto_start_until_exit() {
  moto_start || return 1
  [[ -n "${MOTO_PID:-}" ]] || return 0
  local previous
  eval "set -- $(trap -p EXIT)"
  previous=${3:-}
  # shellcheck disable=SC2064 # expanded now on purpose: the trap that was set until now
  trap "moto_stop${previous:+; $previous}" EXIT
}
