# shellcheck shell=bash
# Starts and stops a throwaway Postgres from the installed server binaries.
# Sourced by scripts/test.sh (and usable by hand: `source scripts/lib/postgres.sh; pg_start_throwaway`).

pg_bin_dir() {
  local initdb
  if initdb=$(command -v initdb 2>/dev/null); then dirname "$initdb"; return; fi
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  echo "no Postgres server binaries (initdb) found; install postgresql (e.g. apt-get install postgresql)" >&2
  return 1
}

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# Sets PG_DIR, PG_PORT and exports DATABASE_URL.
pg_start_throwaway() {
  local bin; bin=$(pg_bin_dir)
  PG_DIR=$(mktemp -d /tmp/quire-pg.XXXXXX)
  PG_PORT=$(free_port)
  local run=()
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$PG_DIR" 2>/dev/null || { echo "initdb cannot run as root and there is no 'postgres' user" >&2; return 1; }
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
  # Tuned for a test suite: durability off, many connections (every test gets a database).
  "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start -o \
    "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  PG_RUN=("${run[@]}"); PG_BIN=$bin
}

pg_stop_throwaway() {
  [[ -n "${PG_DIR:-}" ]] || return 0
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
