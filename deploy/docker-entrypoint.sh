#!/bin/sh
# ferry-container-start: the start command of the ferry container image.
#
# On the first start of a container it creates the agent's identity in the
# state dir; then it runs the agent in the foreground. The cluster key goes
# from the founding container to the others through a directory that every
# container of the cluster mounts (a compose volume, a bind mount):
#
#   FERRY_FIRST=1        this container founds the cluster: `ferryd init`
#                        creates the cluster key, identity and admin
#                        credential; the key is then copied to the shared dir.
#   (otherwise)          wait for the key in the shared dir, copy it into the
#                        state dir and `ferryd init --join-existing`.
#   FERRY_CLUSTER        cluster name (default: lab)
#   FERRY_CONFIG         config file (default: /etc/ferry/ferry.conf)
#   FERRY_STATE_DIR      state dir (default: /var/lib/ferry)
#   FERRY_BOOTSTRAP_DIR  the shared dir (default: /run/ferry-bootstrap)
#   FERRY_KEY_WAIT       seconds to wait for the key (default: 120)
#
# Sharing the cluster key through a volume is for demos and tests on one
# machine. On real hosts copy it over a trusted channel: docs/operations.md.
set -eu

cluster=${FERRY_CLUSTER:-lab}
config=${FERRY_CONFIG:-/etc/ferry/ferry.conf}
state=${FERRY_STATE_DIR:-/var/lib/ferry}
shared=${FERRY_BOOTSTRAP_DIR:-/run/ferry-bootstrap}
wait_s=${FERRY_KEY_WAIT:-120}
marker="$state/.container-initialised"

say() { echo "ferry-container-start: $*" >&2; }

if [ ! -e "$marker" ]; then
    umask 077
    mkdir -p "$state"
    if [ "${FERRY_FIRST:-0}" = 1 ]; then
        say "founding cluster $cluster in $state"
        ferryd init --cluster "$cluster" --state-dir "$state"
        if [ ! -s "$state/cluster.key" ]; then
            say "ferryd init left no $state/cluster.key"
            exit 1
        fi
        mkdir -p "$shared"
        cp "$state/cluster.key" "$shared/cluster.key.tmp"
        mv "$shared/cluster.key.tmp" "$shared/cluster.key"
    else
        say "waiting up to ${wait_s}s for $shared/cluster.key"
        i=0
        while [ ! -s "$shared/cluster.key" ]; do
            i=$((i + 1))
            if [ "$i" -gt "$((wait_s * 5))" ]; then
                say "no cluster key after ${wait_s}s; is the first host up?"
                exit 1
            fi
            sleep 0.2
        done
        cp "$shared/cluster.key" "$state/cluster.key"
        say "joining cluster $cluster"
        ferryd init --cluster "$cluster" --state-dir "$state" --join-existing
    fi
    touch "$marker"
fi

exec ferryd run --config "$config"
