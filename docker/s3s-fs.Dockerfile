# The S3-compatible server of docker/compose.yaml: s3s-fs (crates.io), which
# checks request signatures and keeps each bucket as a folder.
#
#   docker build -f docker/s3s-fs.Dockerfile -t dj_udf-s3s-fs docker
#
# RUST is an image with cargo (the official rust image by default), or one
# that already holds /out/bin/s3s-fs (the tests use the s3s-fs built on the
# host that way, with no registry); BASE is where it runs.
ARG RUST=docker.io/library/rust:1-bookworm
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${RUST} AS build
RUN test -x /out/bin/s3s-fs || cargo install s3s-fs@0.14.1 --features binary --locked --root /out

FROM ${BASE}
COPY --from=build /out/bin/s3s-fs /usr/local/bin/s3s-fs
# The bucket is a folder below /srv/s3; the server makes it on start.
ENV S3_BUCKET=dj-store S3_ACCESS_KEY=djaccesskey S3_SECRET_KEY=change-this-secret
VOLUME ["/srv/s3"]
EXPOSE 9000
CMD ["sh", "-c", "mkdir -p \"/srv/s3/$S3_BUCKET\" && exec s3s-fs --host 0.0.0.0 --port 9000 --access-key \"$S3_ACCESS_KEY\" --secret-key \"$S3_SECRET_KEY\" /srv/s3"]
