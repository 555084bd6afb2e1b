#!/usr/bin/env bash
# Makes the base images the Dockerfile and docker-compose.yml name, for machines that reach
# Debian's and PyPI's package archives but no container registry. Each is a stand-in built
# locally and tagged with the exact name the committed files use, so the Dockerfile and
# docker-compose.yml are built and run unchanged (online, a user just pulls the real images):
#
#   python:<PYTHON_VERSION>-slim  (Dockerfile ARG)  Debian minbase (debootstrap of the host's own
#                                 release) + python3, python3-venv, ca-certificates; the host's CA
#                                 bundle as SSL_CERT_FILE; /usr/local/bin/python3 like the real
#                                 image (the release's Python stands in: 3.11 on bookworm)
#   ghcr.io/astral-sh/uv:<UV_VERSION>  (Dockerfile ARG)  FROM scratch, /uv and /uvx from the `uv`
#                                 wheel on PyPI (newest release of that minor version)
#   postgres:*  (docker-compose.yml)  Debian's postgresql-15 and postgres-entrypoint.sh: the
#                                 official image's contract (POSTGRES_USER, POSTGRES_PASSWORD[_FILE],
#                                 POSTGRES_DB, PGDATA, /docker-entrypoint-initdb.d, UTF8 initdb), uid 70
#   redis:*  (docker-compose.yml, when it names one)  Debian's redis-server and redis-entrypoint.sh,
#                                 uid 999
#
# Cached: an image whose tag already exists is kept when it was made from the same files (its
# label shop.offline.inputs, a hash of its Dockerfile and what it copies: a stand-in made by an
# older entry point is made again); SHOP_REBUILD_BASE_IMAGES=1 rebuilds all.
# Needs a running engine and debootstrap (deploy/offline/setup-engine.sh installs both), root.
#
#   deploy/offline/make-base-images.sh
#   DOCKER_BUILDKIT=1 /usr/bin/docker build --network host --target gateway -t shop/gateway:dev .
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
export DOCKER_BUILDKIT=1
REBUILD="${SHOP_REBUILD_BASE_IMAGES:-0}"
RELEASE="${SHOP_DEBIAN_RELEASE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}"
CA_BUNDLE="${SHOP_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
DEBIAN_BASE="shop-offline/debian:$RELEASE"

log() { echo "make-base-images: $*" >&2; }

# have TAG [INPUTS]: the image exists (and was made from INPUTS, a hash from inputs_hash).
have() {
  [ "$REBUILD" != 1 ] || return 1
  if [ -n "${2:-}" ]; then
    [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "shop.offline.inputs"}}' "$1" 2>/dev/null)" = "$2" ]
  else
    "$DOCKER" image inspect "$1" >/dev/null 2>&1
  fi
}

inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

# The Debian mirror this host's apt uses (the first non-security one), unless given.
debian_mirror() {
  if [ -n "${SHOP_DEBIAN_MIRROR:-}" ]; then echo "$SHOP_DEBIAN_MIRROR"; return; fi
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -E '^(deb|URIs:)\s' | grep -v -- '-security' \
    | grep -oE '(https?|file)://[^ ]+/debian/?' | head -n 1 || true
}

# A Dockerfile ARG's default value.
dockerfile_arg() {
  sed -nE "s/^ARG $1=(.+)$/\1/p" "$REPO/Dockerfile" | head -n 1
}

# The image a compose service runs, for images named like NAME:TAG (e.g. postgres:16-alpine).
compose_image() {
  grep -oE "^\s+image:\s*$1:[^[:space:]\"']+" "$REPO/docker-compose.yml" | head -n 1 | sed -E 's/.*image:\s*//' || true
}

build() {  # build TAG INPUTS DOCKERFILE CONTEXT [ARGS...]
  local tag="$1" inputs="$2" file="$3" context="$4"
  shift 4
  log "building $tag"
  "$DOCKER" build --quiet --network host --build-arg "BASE=$DEBIAN_BASE" --label "shop.offline.inputs=$inputs" \
    -f "$file" -t "$tag" "$@" "$context" >&2
}

debian_base() {
  have "$DEBIAN_BASE" && return 0
  local mirror rootfs
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || { log "no Debian mirror found in /etc/apt; set SHOP_DEBIAN_MIRROR"; exit 1; }
  rootfs="$(mktemp -d /var/tmp/shop-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap --variant=minbase $RELEASE from $mirror"
  debootstrap --variant=minbase "$RELEASE" "$rootfs" "$mirror" >/dev/null
  # Smaller and quieter, as Debian's own container images are.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90shop-offline"
  tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' - "$DEBIAN_BASE" >/dev/null
}

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$HERE/postgres-entrypoint.sh" "$HERE/redis-entrypoint.sh" "$context/"
cp "$CA_BUNDLE" "$context/ca-certificates.crt"

python_tag="python:$(dockerfile_arg PYTHON_VERSION)-slim"
uv_version="$(dockerfile_arg UV_VERSION)"
uv_tag="ghcr.io/astral-sh/uv:$uv_version"
postgres_tag="$(compose_image postgres)"
redis_tag="$(compose_image redis)"

python_inputs="$(inputs_hash "$HERE/python.Dockerfile" "$context/ca-certificates.crt")"
uv_inputs="$(inputs_hash "$HERE/uv.Dockerfile")"
postgres_inputs="$(inputs_hash "$HERE/postgres.Dockerfile" "$HERE/postgres-entrypoint.sh")"
redis_inputs="$(inputs_hash "$HERE/redis.Dockerfile" "$HERE/redis-entrypoint.sh")"

if ! have "$python_tag" "$python_inputs"; then
  debian_base
  build "$python_tag" "$python_inputs" "$HERE/python.Dockerfile" "$context"
fi

if ! have "$uv_tag" "$uv_inputs"; then
  log "fetching uv $uv_version.* from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_17_x86_64 -d "$context/uv" "uv==$uv_version.*"
  unzip -q -j -o -d "$context/uv" "$context"/uv/uv-*.whl '*.data/scripts/uv' '*.data/scripts/uvx'
  build "$uv_tag" "$uv_inputs" "$HERE/uv.Dockerfile" "$context"
fi

if [ -n "$postgres_tag" ] && ! have "$postgres_tag" "$postgres_inputs"; then
  debian_base
  build "$postgres_tag" "$postgres_inputs" "$HERE/postgres.Dockerfile" "$context"
fi

if [ -n "$redis_tag" ] && ! have "$redis_tag" "$redis_inputs"; then
  debian_base
  build "$redis_tag" "$redis_inputs" "$HERE/redis.Dockerfile" "$context"
fi

log "ready: $python_tag $uv_tag ${postgres_tag:-} ${redis_tag:-}"
