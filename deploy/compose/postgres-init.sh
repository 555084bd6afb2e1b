#!/bin/sh
# PostgreSQL init script for docker compose (mounted into /docker-entrypoint-initdb.d/).
# Runs once, on the first start with an empty data volume: one role and one database per
# service, each role owning only its own database, each password read from the compose secret
# /run/secrets/<service>_db_password (the same password as in <service>_database_url).
# No other role may connect to a service's database (CONNECT revoked from PUBLIC).
# SHOP_DB_SERVICES and SHOP_DB_SECRETS_DIR override the list and the directory (for tests).
set -eu

secrets_dir="${SHOP_DB_SECRETS_DIR:-/run/secrets}"
for service in ${SHOP_DB_SERVICES:-auth catalog cart orders payments}; do
    password_file="$secrets_dir/${service}_db_password"
    if [ ! -s "$password_file" ]; then
        echo "postgres-init: missing secret $password_file" >&2
        false
    fi
    password=$(cat "$password_file")
    echo "postgres-init: creating role and database '$service'"
    # psql variables (:"name", :'literal') quote the identifier and the password safely.
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
         --set=svc="$service" --set=pw="$password" <<'SQL'
CREATE ROLE :"svc" LOGIN PASSWORD :'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE :"svc" OWNER :"svc";
REVOKE ALL ON DATABASE :"svc" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"svc" TO :"svc";
SQL
done
