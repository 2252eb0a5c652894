# Stand-in for quay.io/coreos/etcd: Debian's etcd server and etcdctl (v3 API).
ARG BASE
FROM ${BASE}
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/*
ENV ETCDCTL_API=3
EXPOSE 2379
CMD ["etcd"]
