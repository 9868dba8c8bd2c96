#!/usr/bin/env bash
# A multi-host test bed on one machine: network namespaces joined by veth
# pairs on one bridge, so that PostgreSQL, each node and the load generator
# talk over a network stack of their own, as separate machines do.
#
#   netbed.sh up N      namespaces sbdb (10.77.0.1), sbload (10.77.0.2) and
#                       sbn1..sbnN (10.77.0.11, .12, …) on bridge sbbr
#                       (10.77.0.254, this namespace's side)
#   netbed.sh down      removes them all
#   netbed.sh cut K     takes node K's link down: its packets go nowhere,
#                       and its connections hang as after a cable pull
#   netbed.sh mend K    brings it back
#   netbed.sh ip NAME   the address of sbdb, sbload or sbnK
#
# Nothing is routed out of the bridge's subnet: no namespace reaches
# anything but the others. Needs root (or CAP_NET_ADMIN) and iproute2.
#
# The round trip: this kernel has no netem (nor fq) qdisc, so `tc` cannot
# delay a link. scripts/cluster-bench.sh puts a delay relay
# (tests/src/bin/delay-relay.rs) in sbdb in front of PostgreSQL instead.
set -euo pipefail

BRIDGE=sbbr
SUBNET=10.77.0

ip_of() {
    case $1 in
        sbdb) echo "$SUBNET.1" ;;
        sbload) echo "$SUBNET.2" ;;
        sbn*) echo "$SUBNET.$((10 + ${1#sbn}))" ;;
        *)
            echo "netbed.sh: no namespace $1" >&2
            exit 2
            ;;
    esac
}

# add NS: the namespace, its loopback, and a veth into the bridge.
add() {
    local ns=$1
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "v-$ns" type veth peer name eth0 netns "$ns"
    ip link set "v-$ns" master "$BRIDGE" up
    ip -n "$ns" addr add "$(ip_of "$ns")/24" dev eth0
    ip -n "$ns" link set eth0 up
}

up() {
    local n=$1 k
    command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; } >/dev/null
    down
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.254/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    add sbdb
    add sbload
    for ((k = 1; k <= n; k++)); do
        add "sbn$k"
    done
}

down() {
    local ns
    for ns in $(ip netns list | awk '/^sb(db|load|n[0-9]+)( |$)/ {print $1}'); do
        ip link del "v-$ns" 2>/dev/null || true
        ip netns del "$ns"
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

case "${1:-}" in
    up) up "${2:?usage: netbed.sh up N}" ;;
    down) down ;;
    cut) ip link set "v-sbn${2:?usage: netbed.sh cut K}" down ;;
    mend) ip link set "v-sbn${2:?usage: netbed.sh mend K}" up ;;
    ip) ip_of "${2:?usage: netbed.sh ip NAME}" ;;
    *)
        echo "usage: netbed.sh up N | down | cut K | mend K | ip NAME" >&2
        exit 2
        ;;
esac
