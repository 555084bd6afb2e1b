# Stand-in for python:3.x-slim (deploy/offline/make-base-images.sh): the Debian release's
# Python on a minbase root, laid out like the official image (/usr/local/bin/python3).
ARG BASE
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# The release's current packages, as the image they stand in for takes its own: no pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python3 \
 && ln -s /usr/bin/python3 /usr/local/bin/python
# The host's CA bundle: uv in the builder stage reaches the package index the way the host does.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
