#!/bin/sh
# Health check stand-in: the broker accepts a TCP connection on the --bootstrap-server address.
set -eu
[ "${1:-}" = --bootstrap-server ] || { echo "usage: $0 --bootstrap-server host:port" >&2; exit 2; }
exec python3 -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), 5).close()' "$2"
