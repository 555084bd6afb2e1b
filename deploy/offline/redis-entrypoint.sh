#!/bin/sh
# Entry point of the stand-in redis image (deploy/offline/make-base-images.sh), keeping the
# official image's behaviour: options alone (or a .conf first) mean `redis-server ...`; started
# as root it drops to the redis user; protected mode is off unless asked for (the official build
# turns it off, the network being the container's own), umask 0077.
set -eu

case "${1:-}" in -*|*.conf) set -- redis-server "$@" ;; esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "${1:-}" = redis-server ]; then
    case " $* " in *protected-mode*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
[ "$(umask)" = 0022 ] && umask 0077
exec "$@"
