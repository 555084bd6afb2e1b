#!/bin/sh
# Generate the compose secrets for a real deployment: strong random values, one file each.
#
#   deploy/compose/gen-secrets.sh [DIR]        (default: deploy/compose/secrets, git-ignored)
#
# Existing files are kept (re-running never rotates a secret behind your back); delete a file
# to regenerate it. Optional secrets (SMTP password, Stripe keys) are created empty: write the
# real value into the file to enable them. Needs openssl.
#
# Permissions: the directory is 0700 (only you on the host), the files 0644 because compose
# bind-mounts them into containers that run as non-root users (10001, postgres, 10999).
set -eu

dir="${1:-$(dirname "$0")/secrets}"
umask 022
mkdir -p "$dir"
chmod 0700 "$dir"

command -v openssl >/dev/null 2>&1 || { echo "gen-secrets: openssl is required" >&2; exit 1; }

# URL-safe random strings (hex), so they can go into a database URL unescaped.
random() { openssl rand -hex "${1:-32}"; }

put() {  # put NAME VALUE: write the file unless it exists
    if [ -e "$dir/$1" ]; then
        echo "kept      $dir/$1"
    else
        printf '%s\n' "$2" > "$dir/$1"
        chmod 0644 "$dir/$1"
        echo "generated $dir/$1"
    fi
}

put postgres_password "$(random 24)"
put page_token_secret "$(random 32)"
# The admin password also meets the user password rules (lower, upper, digit).
put admin_password "Adm1n-$(random 16)"
# Signs the sandbox payment provider's webhooks (production refuses the default).
put sandbox_webhook_secret "$(random 32)"

# Redis (only the gateway uses it): its password, and the gateway's URL holding it.
put redis_password "$(random 24)"
put redis_url "redis://:$(cat "$dir/redis_password")@redis:6379/0"

for service in auth catalog cart orders payments; do
    put "${service}_db_password" "$(random 24)"
    password=$(cat "$dir/${service}_db_password")
    put "${service}_database_url" "postgresql://${service}:${password}@postgres:5432/${service}"
done

if [ -e "$dir/jwt_private_key.pem" ]; then
    echo "kept      $dir/jwt_private_key.pem"
else
    # Ed25519, PKCS#8 PEM: signs access tokens (EdDSA); auth serves the public half as JWKS.
    openssl genpkey -algorithm ed25519 -out "$dir/jwt_private_key.pem"
    chmod 0644 "$dir/jwt_private_key.pem"
    echo "generated $dir/jwt_private_key.pem"
fi

# Service identities: one Ed25519 key per process (each container mounts only its own), and
# the public halves of all of them, derived again on every run (so they always match the keys).
identities="gateway auth catalog cart orders payments"
for name in $identities; do
    if [ -e "$dir/${name}_service_key.pem" ]; then
        echo "kept      $dir/${name}_service_key.pem"
    else
        openssl genpkey -algorithm ed25519 -out "$dir/${name}_service_key.pem"
        chmod 0644 "$dir/${name}_service_key.pem"
        echo "generated $dir/${name}_service_key.pem"
    fi
done
{
    printf '{'
    sep=''
    for name in $identities; do
        # JSON string of the public key PEM: one line, newlines written as \n.
        pem=$(openssl pkey -in "$dir/${name}_service_key.pem" -pubout | awk '{printf "%s\\n", $0}')
        printf '%s\n  "%s": "%s"' "$sep" "$name" "$pem"
        sep=','
    done
    printf '\n}\n'
} > "$dir/service_public_keys.json"
chmod 0644 "$dir/service_public_keys.json"
echo "derived   $dir/service_public_keys.json"

for optional in smtp_password stripe_api_key stripe_webhook_secret; do
    if [ ! -e "$dir/$optional" ]; then
        : > "$dir/$optional"
        chmod 0644 "$dir/$optional"
        echo "empty     $dir/$optional (optional: write the value into it to enable)"
    fi
done
