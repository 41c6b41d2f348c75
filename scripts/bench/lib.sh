# shellcheck shell=bash
# What the benchmark wrappers share. Sourced by chaos.sh and pipeline.sh.

# Sets target_dir to cargo's target directory and makes sure it holds `api-server` and
# `worker` of profile $1 (`release`, or anything else for debug, where release binaries
# also do), unless $2 (how many binaries were given on the command line) is 2.
# Debug binaries come from the test build, as scripts/test.sh makes them: a plain
# `cargo build` resolves dependency features differently and would build many
# dependencies a second time.
bench_binaries() {
  local profile=$1 given=${2:-0}
  if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    target_dir=$CARGO_TARGET_DIR
  else
    target_dir=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  fi
  ((given >= 2)) && return 0
  have() { [[ -x "$target_dir/$1/api-server" && -x "$target_dir/$1/worker" ]]; }
  case $profile in
    release) have release || { log "building release binaries"; cargo build --release --locked -p quire-api -p quire-worker; } ;;
    *) have debug || have release || { log "building debug binaries"; cargo test --workspace --locked --no-run; } ;;
  esac
}
