#!/bin/sh
# The one-shot job of docker compose --profile redis-cluster: joins the six Redis
# Cluster nodes on first start (three primaries, a replica each), and on every later
# start introduces them to each other again (CLUSTER MEET), since containers that come
# back may have new addresses while each node's nodes.conf still lists the old ones.
# Then waits (bounded) until the cluster is ok. Exits non-zero if it never is.
set -eu
nodes="redis-node-1 redis-node-2 redis-node-3 redis-node-4 redis-node-5 redis-node-6"
tries=60  # seconds to wait for a node, and for the cluster

address_of() {  # a node's current IP once it answers PING
    for _ in $(seq "$tries"); do
        ip=$(getent ahostsv4 "$1" | awk 'NR == 1 { print $1 }')
        if [ -n "$ip" ] && [ "$(redis-cli -h "$ip" ping 2>/dev/null)" = PONG ]; then
            echo "$ip"
            return 0
        fi
        sleep 1
    done
    echo "redis-cluster-init: $1 never answered" >&2
    return 1
}

ips=""
for node in $nodes; do
    ips="$ips $(address_of "$node")"
done

info() { redis-cli -h redis-node-1 cluster info | tr -d '\r'; }
assigned=0  # slots any node has: none only before the first join
for ip in $ips; do
    slots=$(redis-cli -h "$ip" cluster info | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p')
    assigned=$((assigned + ${slots:-0}))
done
if [ "$assigned" -eq 0 ]; then
    echo "redis-cluster-init: creating the cluster on$ips"
    # shellcheck disable=SC2086  # one argument per address
    redis-cli --cluster create $(for ip in $ips; do echo "$ip:6379"; done) \
        --cluster-replicas 1 --cluster-yes
else
    echo "redis-cluster-init: the cluster exists; introducing its nodes again"
    for ip in $ips; do
        for other in $ips; do
            if [ "$ip" != "$other" ]; then
                redis-cli -h "$ip" cluster meet "$other" 6379 >/dev/null || true
            fi
        done
    done
fi

for _ in $(seq "$tries"); do
    if info | grep -q '^cluster_state:ok$'; then
        echo "redis-cluster-init: cluster_state:ok"
        exit 0
    fi
    sleep 1
done
echo "redis-cluster-init: the cluster is not ok after ${tries}s" >&2
exit 1
