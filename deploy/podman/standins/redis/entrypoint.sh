#!/bin/sh
# As the real image: `redis-server ...` runs with protected mode off unless the command says otherwise.
set -eu
if [ "${1:-}" = redis-server ]; then
    shift
    case " $* " in
        *" --protected-mode "*) ;;
        *) set -- --protected-mode no "$@" ;;
    esac
    exec redis-server "$@"
fi
exec "$@"
