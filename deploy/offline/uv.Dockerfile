# Stand-in for ghcr.io/astral-sh/uv:<version> (deploy/offline/make-base-images.sh): the uv and
# uvx binaries from the uv wheel, at / like the official distroless image.
FROM scratch
COPY uv/uv uv/uvx /
ENTRYPOINT ["/uv"]
