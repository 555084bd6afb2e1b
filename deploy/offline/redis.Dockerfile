# Stand-in for the official redis image (deploy/offline/make-base-images.sh): Debian's Redis 7,
# uid 999 / gid 1000 as in redis:*-alpine, /data as the working directory.
ARG BASE
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# The release's current packages, as the image they stand in for takes its own: no pins.
# hadolint ignore=DL3008
RUN groupadd --system --gid 1000 redis \
 && useradd --system --uid 999 --gid redis --home-dir /data --shell /usr/sbin/nologin redis \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
COPY --chmod=0755 redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
