#!/bin/sh
# Entry point of the stand-in postgres image (deploy/offline/make-base-images.sh), keeping the
# documented contract of the official image's docker-entrypoint.sh:
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required unless
#   POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user's name), PGDATA,
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256 for TCP), and on the
#   first start with an empty data directory the files in /docker-entrypoint-initdb.d (*.sh run
#   when executable, else sourced; *.sql and *.sql.gz through psql) against a server listening on
#   its Unix socket only. The cluster is created with UTF8 encoding (C.UTF-8 locale).
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

# `docker run IMAGE -c setting=value` means `postgres -c setting=value`.
case "${1:-}" in -*) set -- postgres "$@" ;; esac

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

file_env() {  # VAR: VAR or VAR_FILE (not both), exported when set
    var="$1"
    eval "value=\${$var:-}; file=\${${var}_FILE:-}"
    if [ -n "$value" ] && [ -n "$file" ]; then
        echo "docker-entrypoint: both $var and ${var}_FILE are set" >&2
        exit 1
    fi
    if [ -n "$file" ]; then value="$(cat "$file")"; fi
    if [ -n "$value" ]; then export "$var=$value"; fi
    unset "${var}_FILE" 2>/dev/null || true
}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    file_env POSTGRES_USER
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_DB
    file_env POSTGRES_INITDB_ARGS
    POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "docker-entrypoint: the database is uninitialized and no superuser password is set:" \
             "give POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
           --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    { echo; echo "host all all all $auth"; } >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"

    # A server on the socket only while the init scripts run, so nothing connects too early.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
    export PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}"
    if [ "$POSTGRES_DB" != postgres ]; then
        # On standard input: psql interpolates :"db" there, never in a -c command.
        echo 'CREATE DATABASE :"db";' \
            | psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname postgres --set db="$POSTGRES_DB" >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then echo "docker-entrypoint: running $f"; "$f"
                else echo "docker-entrypoint: sourcing $f"; . "$f"; fi ;;
            *.sql) echo "docker-entrypoint: running $f"
                psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) echo "docker-entrypoint: running $f"
                gunzip -c "$f" | psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$POSTGRES_DB" ;;
            *) echo "docker-entrypoint: ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    unset PGPASSWORD
    echo "docker-entrypoint: PostgreSQL init process complete; ready for start up."
fi

exec "$@"
