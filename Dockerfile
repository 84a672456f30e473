# capstan's image: the static binary, CA certificates and nothing else.
#
# Build it with `make image` (tag capstan:dev). No registry is needed, and none is
# reachable from where capstan is developed, so there is no `FROM golang` build stage:
# make compiles the binary on the host (CGO_ENABLED=0, so it runs on scratch) and puts it
# into a small build context together with the host's CA bundle (for HTTPS Git remotes,
# the SLB API and notification webhooks) and an empty /tmp:
#
#   context/capstan                 the binary
#   context/ca-certificates.crt     the CA bundle
#   context/tmp/                    mode 1777
#
# There is no shell or curl in the image: the health check is capstan itself.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY tmp /tmp
COPY capstan /usr/local/bin/capstan
# The Git cache (go-git's bare repositories and checkouts) lives here; mount a volume to
# keep it across restarts.
ENV XDG_CACHE_HOME=/var/cache \
    HOME=/tmp
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/capstan", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run", "--help"]
