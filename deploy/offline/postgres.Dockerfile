# Stand-in for the official postgres image (deploy/offline/make-base-images.sh): Debian's
# PostgreSQL 15, uid/gid 70 as in postgres:*-alpine, and an entry point keeping its contract.
ARG BASE
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# The release's current packages, as the image they stand in for takes its own: no pins.
# hadolint ignore=DL3008
RUN groupadd --system --gid 70 postgres \
 && useradd --system --uid 70 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
 && mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data /docker-entrypoint-initdb.d \
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql /var/lib/postgresql/data \
 && chmod 3777 /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
