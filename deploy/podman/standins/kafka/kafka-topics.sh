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
if output=$(tansu topic create "$topic" --broker "tcp://$broker" --partitions "$partitions" 2>&1); then
    echo "Created topic $topic."
elif [ "$if_not_exists" = 1 ] && echo "$output" | grep -qi "exists"; then
    :
else
    echo "$output" >&2
    exit 1
fi
