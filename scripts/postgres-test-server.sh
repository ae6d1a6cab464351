#!/usr/bin/env bash
# Start or stop the machine's Debian PostgreSQL cluster for jepardy's tests; installs nothing.
#
#   scripts/postgres-test-server.sh start   # start it, ensure role jepardy, print the URL
#   scripts/postgres-test-server.sh stop
#
# `start` prints one line on stdout, a URL for JEPARDY_TEST_PG_URL:
#   export JEPARDY_TEST_PG_URL="$(scripts/postgres-test-server.sh start)"
# It uses the first cluster `pg_lsclusters` lists (creating `main` for the newest installed
# version when there is none), which Debian configures to listen on localhost only. Role
# `jepardy` (password `jepardy`, CREATEDB) is created when missing; each test creates and drops
# its own database. Run it as root or as postgres (`apt-get install postgresql` first).
set -euo pipefail

ROLE=jepardy
PASSWORD=jepardy

die() { echo "postgres-test-server: $*" >&2; exit 1; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        (cd / && "$@")
    else
        (cd / && runuser -u postgres -- "$@")
    fi
}

# "VERSION CLUSTER PORT STATUS" of the first cluster; with `create`, make one when there is none.
cluster() {
    command -v pg_lsclusters >/dev/null || die "no PostgreSQL here; apt-get install postgresql"
    if [ "${1:-}" = create ] && [ -z "$(pg_lsclusters --no-header)" ]; then
        local version
        version="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
        [ -n "$version" ] || die "no PostgreSQL server under /usr/lib/postgresql"
        pg_createcluster "$version" main >&2
    fi
    pg_lsclusters --no-header | head -n 1 | awk '{print $1, $2, $3, $4}'
}

start() {
    local version name port status
    read -r version name port status < <(cluster create)
    if [ "$status" != online ]; then
        pg_ctlcluster "$version" "$name" start >&2
    fi
    for _ in $(seq 50); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.2
    done
    pg_isready -q -h 127.0.0.1 -p "$port" || die "cluster $version/$name not ready on port $port"
    as_postgres psql -q -v ON_ERROR_STOP=1 -p "$port" -d postgres >&2 <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB' WHERE NOT EXISTS (
    SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD';
SQL
    echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$port/postgres"
}

stop() {
    local version name port status
    read -r version name port status < <(cluster) || return 0  # no cluster: nothing to stop
    if [ "$status" = online ]; then
        pg_ctlcluster "$version" "$name" stop >&2
    fi
}

[ "$(id -u)" = 0 ] || [ "$(id -un)" = postgres ] || die "run me as root or as postgres"
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
