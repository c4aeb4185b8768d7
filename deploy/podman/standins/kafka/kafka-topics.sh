#!/bin/sh
# The `kafka-topics.sh --bootstrap-server B --create [--if-not-exists] --topic T --partitions N ...` of the compose
# file, through `tansu topic create`; every other use is refused.
set -eu
broker="" topic="" partitions=1 create=0 if_not_exists=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bootstrap-server) broker=$2; shift ;;
        --topic) topic=$2; shift ;;
        --partitions) partitions=$2; shift ;;
        --replication-factor) shift ;;
        --create) create=1 ;;
        --if-not-exists) if_not_exists=1 ;;
        *) echo "kafka-topics.sh stand-in: unsupported argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$create" = 1 ] && [ -n "$broker" ] && [ -n "$topic" ] || { echo "kafka-topics.sh stand-in: --create only" >&2; exit 2; }
# A few tries: the network's DNS (aardvark-dns) may briefly not answer while other containers join the network.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if output=$(tansu topic create "$topic" --broker "tcp://$broker" --partitions "$partitions" 2>&1); then
        echo "Created topic $topic."
        exit 0
    elif echo "$output" | grep -qi "exists"; then
        [ "$if_not_exists" = 1 ] && exit 0
        break
    fi
    [ "$attempt" = 10 ] || sleep 1
done
echo "$output" >&2
exit 1
