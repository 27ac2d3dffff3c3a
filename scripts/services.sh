#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL (and docker-compose, to validate the compose
# file) are installed, Redis and PostgreSQL running on loopback, and that
# PostgreSQL has the `cartd` role and database the tests use. Idempotent: safe on
# a fresh Debian machine and on one that has run it before. Needs root (or sudo)
# for apt-get and for starting the packaged PostgreSQL cluster.
. "$(dirname "$0")/lib.sh"
lib_init services

REDIS_PORT="${CARTD_REDIS_PORT:-6379}"
PG_PORT="${CARTD_PG_PORT:-5432}"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
# Only to validate docker-compose.yml (`docker-compose config`); no engine needed.
command -v docker-compose >/dev/null || missing+=(docker-compose)
# The storefront's browser tests (browser-tests/) drive Debian's Chromium
# through its chromedriver (the two packages' versions move together).
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Redis: no persistence (tests flush and restart it), keyspace events on.
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --notify-keyspace-events Ex --logfile /var/tmp/cartd-redis.log
  wait_until 5 "" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || true
fi
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null

# PostgreSQL: the packaged cluster (initdb refuses to run as root).
if ! pg_ready "$PG_PORT"; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating PostgreSQL $version cluster"
    as_root pg_createcluster "$version" main >/dev/null
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster "$version" main start
  wait_until 10 "" pg_ready "$PG_PORT" || true
fi
pg_ready "$PG_PORT" || { log "PostgreSQL did not come up on 127.0.0.1:$PG_PORT"; exit 1; }

if [ "$(psql_admin "$PG_PORT" "select 1 from pg_roles where rolname = 'cartd'")" != "1" ]; then
  log "creating role cartd"
  psql_admin "$PG_PORT" "create role cartd login createdb password 'cartd'"
fi
if [ "$(psql_admin "$PG_PORT" "select 1 from pg_database where datname = 'cartd'")" != "1" ]; then
  log "creating database cartd"
  psql_admin "$PG_PORT" "create database cartd owner cartd"
fi
log "redis on 127.0.0.1:$REDIS_PORT and PostgreSQL on 127.0.0.1:$PG_PORT are ready"
