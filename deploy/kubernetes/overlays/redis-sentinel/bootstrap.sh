#!/bin/sh
# Init container of each Redis pod: writes /conf/redis.conf and /conf/sentinel.conf for this pod.
# The master is whatever the other pods' sentinels name; when none answers (a fresh set, or all pods
# restarting), redis-0 starts as master. The password comes from the mounted Secret, never from env.
# (The paths can be moved through the environment for tests/deploy; the pod uses the defaults.)
set -eu

secrets=${REDIS_SECRETS_DIR:-/run/secrets/redis}
conf=${REDIS_CONF_DIR:-/conf}
data=${REDIS_DATA_DIR:-/data}
service=${REDIS_SERVICE:-redis-headless}
self="${POD_NAME:-${HOSTNAME:-$(hostname)}}.$service"   # the pod name (HOSTNAME in a pod)

password=$(cat "$secrets/password")
if [ "$password" = "REPLACE-ME" ] || [ -z "$password" ]; then
  echo "bootstrap: set the Redis password (Secret clever-gateway-redis, key password)" >&2
  exit 1
fi

master=""
for i in 0 1 2; do
  peer="redis-$i.$service"
  [ "$peer" = "$self" ] && continue
  answer=$(timeout 3 redis-cli -h "$peer" -p 26379 sentinel get-master-addr-by-name mymaster 2>/dev/null \
           | head -n 1) || answer=""
  if [ -n "$answer" ]; then
    master=$answer
    break
  fi
done
[ -n "$master" ] || master="redis-0.$service"
echo "bootstrap: $self starts with master $master"

umask 077
{
  echo "bind 0.0.0.0"
  echo "port 6379"
  echo "dir $data"
  echo 'save ""'
  echo "appendonly no"
  echo "requirepass $password"
  echo "masterauth $password"
  echo "replica-announce-ip $self"
  if [ "$master" != "$self" ]; then
    echo "replicaof $master 6379"
  fi
} > "$conf/redis.conf"
{
  echo "bind 0.0.0.0"
  echo "port 26379"
  echo "protected-mode no"
  echo "dir /tmp"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $self"
  echo "sentinel monitor mymaster $master 6379 2"
  echo "sentinel auth-pass mymaster $password"
  echo "sentinel down-after-milliseconds mymaster 5000"
  echo "sentinel failover-timeout mymaster 60000"
  echo "sentinel parallel-syncs mymaster 1"
} > "$conf/sentinel.conf"
