# shellcheck shell=bash
# A free TCP port on loopback, for the throwaway servers the scripts start. Sourced by the
# other scripts/lib files.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
