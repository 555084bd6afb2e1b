#!/bin/sh
# Container entry point for every shop image: `shop-entrypoint CMD [ARGS...]`.
#
# docker compose mounts secrets as files under /run/secrets/ (compose `secrets:` with a
# `target:` named after the variable, e.g. /run/secrets/SHOP_JWT_PRIVATE_KEY). The services
# read their settings from the environment only, so every regular file there whose name is a
# SHOP_* or STRIPE_* variable becomes that variable (multi-line values such as PEM keys kept;
# trailing newlines dropped). Empty files are skipped, so an optional secret (a Stripe key, an
# SMTP password) can be an empty file. Variables already set in the environment win. Then the
# command is exec'ed, so it runs as PID 1 and receives SIGTERM itself.
#
# On Kubernetes, secrets arrive as environment variables and this script only execs.
#
# Guard: the development-only secrets committed to git all contain the marker
# INSECURE-DEV-ONLY. With SHOP_ENV=production (the images' default) the script refuses to
# start when any variable holds that marker, whichever way it arrived.
set -eu

secrets_dir="${SHOP_SECRETS_DIR:-/run/secrets}"
if [ -d "$secrets_dir" ]; then
    for file in "$secrets_dir"/*; do
        [ -f "$file" ] || continue
        name=${file##*/}
        case "$name" in
            *[!A-Za-z0-9_]*) continue ;;
            SHOP_*|STRIPE_*) ;;
            *) continue ;;
        esac
        if eval "[ -n \"\${$name+set}\" ]"; then
            continue
        fi
        value=$(cat "$file")
        [ -n "$value" ] || continue
        export "$name=$value"
    done
fi

if [ "${SHOP_ENV:-}" = production ] && env | grep -q 'INSECURE-DEV-ONLY'; then
    echo "shop-entrypoint: SHOP_ENV=production with development-only secrets (INSECURE-DEV-ONLY):" \
         "generate real ones (README.md, section Deploy)" >&2
    exit 78
fi

if [ "$#" -eq 0 ]; then
    echo "usage: shop-entrypoint COMMAND [ARGS...]" >&2
    exit 64
fi
exec "$@"
