#!/bin/sh
# Starts the compose stack's Redis (docker-compose.yml, service `redis`) with the password of the
# compose secret redis_password: `shop-redis-server [REDIS-SERVER OPTIONS...]`.
#
# The password never appears on a command line (`ps`, `docker inspect` would show it): the one
# configuration line that holds it reaches redis-server on its standard input (`redis-server -`).
# That line is an ACL for the default user, the only one, which the gateway uses: its password,
# every key and channel, every command but the @dangerous ones (FLUSHALL, CONFIG, DEBUG, KEYS,
# SHUTDOWN, MONITOR, ...), none of which the gateway sends.
#
# Like the shop's own images: with SHOP_ENV=production it refuses the development-only password
# committed to git (marker INSECURE-DEV-ONLY).
set -eu

password_file="${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}"
password=$(cat "$password_file")
case "$password" in
    "" | *[!A-Za-z0-9._~-]*)
        # It also goes into the gateway's SHOP_REDIS_URL: URL-safe, as gen-secrets.sh makes it.
        echo "shop-redis-server: $password_file must hold a non-empty password of A-Z a-z 0-9 . _ ~ -" >&2
        exit 78 ;;
esac
if [ "${SHOP_ENV:-}" = production ] && [ "${password#*INSECURE-DEV-ONLY}" != "$password" ]; then
    echo "shop-redis-server: SHOP_ENV=production with the development-only Redis password" \
         "(INSECURE-DEV-ONLY): generate real secrets (README.md, section Deploy)" >&2
    exit 78
fi

exec redis-server - "$@" <<CONF
user default on >$password ~* &* +@all -@dangerous
CONF
