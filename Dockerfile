# portcullis: the release binary on a minimal runtime that runs as a non-root user.
#
#   docker build -t portcullis .
#   docker run -d --name portcullis \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v portcullis-run:/run/portcullis -v portcullis-data:/var/lib/portcullis \
#     portcullis
#   # clients mount the portcullis-run volume and use
#   # DOCKER_HOST=unix:///run/portcullis/portcullis.sock
#
# Both base images are build arguments, so the image can be built where no
# registry answers: fixtures/build-offline-bases.sh makes a runtime base from
# this machine's own libraries, and PREBUILT names a binary already built on
# the host (then the build stage only needs a shell), as the tests do.

ARG BUILDER_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
# A path inside the build context to a binary built beforehand; empty = compile here.
ARG PREBUILT=
WORKDIR /src
COPY . .
RUN if [ -n "$PREBUILT" ]; then \
      cp "$PREBUILT" /portcullis; \
    else \
      cargo build --release --locked --bin portcullis && cp target/release/portcullis /portcullis; \
    fi \
 && mkdir -p /state/run/portcullis /state/run/portcullis-shared /state/var/lib/portcullis \
      /state/etc/portcullis \
 && printf '%s\n' \
      '# The image default; mount your own over it (keys: the serve flags).' \
      'listen = ["unix:///run/portcullis/portcullis.sock?mode=660"]' \
      'data_dir = "/var/lib/portcullis"' > /state/etc/portcullis/portcullis.toml \
 && chown -R 65532:65532 /state/run /state/var

FROM ${RUNTIME_IMAGE}
COPY --from=build /portcullis /usr/local/bin/portcullis
COPY --from=build /state/ /
# Where the CLI (and so the HEALTHCHECK) finds the server; serve itself reads
# /etc/portcullis/portcullis.toml, which a deployment mounts over.
ENV PORTCULLIS_HOST=unix:///run/portcullis/portcullis.sock
USER 65532:65532
# /run/portcullis holds the default (administrator's) socket; mount a volume
# at /run/portcullis-shared for sockets that other containers reach.
VOLUME ["/var/lib/portcullis", "/run/portcullis"]
# `/_ping` through the whole pipeline: identified, decided, recorded, forwarded.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/portcullis", "health"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
