# Stand-in for alpine/socat: Debian's socat as the entrypoint.
ARG BASE
FROM ${BASE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends socat \
 && rm -rf /var/lib/apt/lists/*
USER nobody
ENTRYPOINT ["socat"]
