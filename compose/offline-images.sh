#!/bin/sh
# Stand-ins for the official images the compose file and the k8s manifests name, built
# from Debian's packages, for machines that reach no image registry (this project's test
# machines). A Debian base comes from debootstrap + `docker import`; each stand-in is that
# base plus the Debian package of the server, started the way the compose file starts the
# official image. Images that exist already are kept (FORCE=1 builds them again).
#
#   sh compose/offline-images.sh            # then: . compose/offline.env before compose
#
# It also builds the project image (eshop:${ESHOP_TAG:-latest}) on the Python stand-in
# and writes compose/offline.env: the variables that point compose at the stand-ins.
set -eu
cd "$(dirname "$0")"

prefix=${OFFLINE_PREFIX:-eshop-offline}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base="$prefix/debian:$suite"
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi

exists() { [ -z "${FORCE:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }

if ! exists "$base"; then
  command -v debootstrap >/dev/null || { $sudo apt-get update -q && $sudo apt-get install -y -q debootstrap; }
  rootfs=$(mktemp -d /var/tmp/eshop-rootfs.XXXXXX)
  trap '$sudo rm -rf "$rootfs"' EXIT
  echo "debootstrap $suite into $rootfs (a few minutes)"
  $sudo debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
  $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  $sudo tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$base"
fi

# stand-in tag <- Dockerfile in compose/offline/
build() {
  if ! exists "$1"; then
    echo "building $1"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" -t "$1" -f "offline/$2" offline >/dev/null
  fi
}
build "$prefix/python:3.11" python.Dockerfile
build "$prefix/postgres:15" postgres.Dockerfile
build "$prefix/rabbitmq:3" rabbitmq.Dockerfile
build "$prefix/redis:7" redis.Dockerfile
build "$prefix/etcd:3" etcd.Dockerfile
build "$prefix/prometheus:2" prometheus.Dockerfile
build "$prefix/socat:1" socat.Dockerfile

# The project image on the Python stand-in. Always built: docker reuses every layer
# whose inputs did not change, so an unchanged tree costs seconds.
cert=${PIP_BUILD_CA:-${PIP_CERT:-$(python3 -m pip config list 2>/dev/null \
  | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -n 1)}}
if [ -n "$cert" ] && [ -f "$cert" ]; then cp "$cert" build-ca/ca.crt; fi
echo "building eshop:${ESHOP_TAG:-latest}"
DOCKER_BUILDKIT=0 docker build -q --build-arg "PYTHON_IMAGE=$prefix/python:3.11" \
  -t "eshop:${ESHOP_TAG:-latest}" -f Dockerfile .. >/dev/null

cat > offline.env <<ENV
# Written by compose/offline-images.sh: compose on the Debian stand-ins (no registry).
PYTHON_IMAGE=$prefix/python:3.11
POSTGRES_IMAGE=$prefix/postgres:15
RABBITMQ_IMAGE=$prefix/rabbitmq:3
REDIS_IMAGE=$prefix/redis:7
ETCD_IMAGE=$prefix/etcd:3
PROMETHEUS_IMAGE=$prefix/prometheus:2
SOCAT_IMAGE=$prefix/socat:1
ENV
