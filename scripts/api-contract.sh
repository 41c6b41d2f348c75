#!/usr/bin/env bash
# The API's contract, checked against a running `quire dev`:
#
#   scripts/api-contract.sh QUIRE_BINARY
#
# 1. docs/openapi.json and the served /openapi.json are valid OpenAPI 3.1
#    (openapi-spec-validator);
# 2. schemathesis sends a bounded number of generated requests to every operation, signed
#    in, and fails on any server error or any answer the document does not describe (status,
#    content type, headers, body schema);
# 3. headless Chromium loads /docs and checks that every operation is listed and that the
#    page requested nothing from another host (scripts/contract/check_docs.py).
#
# Installs what it needs when missing: schemathesis and openapi-spec-validator into a
# virtualenv under ~/.cache/quire (from PyPI), and Debian's chromium package.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ports.sh

log() { printf '==> %s\n' "$*" >&2; }
QUIRE=${1:?usage: scripts/api-contract.sh QUIRE_BINARY}

SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.7.2
# Examples per operation and phase: bounded, so the run takes a minute or two.
MAX_EXAMPLES=${QUIRE_SCHEMATHESIS_EXAMPLES:-40}

# ---- tools ------------------------------------------------------------------------------
venv="${XDG_CACHE_HOME:-$HOME/.cache}/quire/contract-venv"
if ! "$venv/bin/python" -c "import schemathesis, openapi_spec_validator, sys; sys.exit(schemathesis.__version__ != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION and openapi-spec-validator $VALIDATOR_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION" >&2
fi
if ! command -v chromium >/dev/null; then
  log "installing Debian's chromium"
  sudo_=(); [[ $(id -u) == 0 ]] || sudo_=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_[@]}" apt-get install -y -q chromium >/dev/null ||
    { "${sudo_[@]}" apt-get update -q >/dev/null && "${sudo_[@]}" apt-get install -y -q chromium >/dev/null; }
fi

# ---- a quire dev to test ----------------------------------------------------------------
work=$(mktemp -d /tmp/quire-contract.XXXXXX)
port=$(free_port)
api="http://127.0.0.1:$port"
cat >"$work/sources.toml" <<TOML
[sources.games]
url = "http://127.0.0.1:9/games"
allow_private = true
title = "Games"
columns = ["day", "player", "score"]
TOML
# No quotas (schemathesis makes many reports), short waits (it sends Prefer: wait=N).
QUIRE_QUOTA_UNFINISHED=0 QUIRE_QUOTA_PER_HOUR=0 QUIRE_MAX_WAIT=2s \
  "$QUIRE" dev --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --data-sources "$work/sources.toml" >"$work/quire.log" 2>&1 &
quire_pid=$!
cleanup() { kill "$quire_pid" 2>/dev/null || true; wait "$quire_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$api/healthz" >/dev/null && break
  sleep 0.2
done

# ---- 1. the document is valid OpenAPI ----------------------------------------------------
log "OpenAPI: validating docs/openapi.json and the served document"
curl -sf "$api/openapi.json" -o "$work/served.json"
"$venv/bin/openapi-spec-validator" docs/openapi.json "$work/served.json"

# ---- 2. schemathesis ---------------------------------------------------------------------
log "schemathesis against quire dev ($MAX_EXAMPLES examples per operation and phase)"
email="contract-$RANDOM$RANDOM@example.com"
curl -sf -X POST "$api/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" >/dev/null
token=$(curl -sf -X POST "$api/auth/signin" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Signing out everywhere would revoke the token the run signs in with.
# Run from the work directory: schemathesis keeps a cache (.schemathesis/) where it runs.
(cd "$work" && "$venv/bin/schemathesis" run "$api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --exclude-path /auth/signout-all \
  --max-examples "$MAX_EXAMPLES" \
  --seed 1 \
  --request-timeout 10 \
  --no-color) 2>&1 | tee "$work/schemathesis.log"
status=${PIPESTATUS[0]}
if [[ $status != 0 ]]; then
  echo "schemathesis failed (exit $status); quire dev's log:" >&2
  tail -50 "$work/quire.log" >&2
  exit 1
fi

# ---- 3. the docs page in headless Chromium ------------------------------------------------
log "docs page in headless Chromium"
python3 scripts/contract/check_docs.py "$api" "$work/chromium"

cleanup
trap - EXIT
rm -rf "$work"
