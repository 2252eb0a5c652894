# Stand-in for python:3.11-slim: Debian's Python 3.11 with venv and pip, `python` on PATH.
ARG BASE
FROM ${BASE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates \
 && ln -s /usr/bin/python3 /usr/local/bin/python \
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
