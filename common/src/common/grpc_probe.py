"""``python -m common.grpc_probe HOST:PORT [SERVICE]``: exit 0 when the gRPC health service
there answers SERVING (compose's healthcheck of a ``grpc_serve`` container; Kubernetes
asks with its own ``grpc:`` probe)."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, service: str = "", *, timeout: float = 5.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name} {error.details()}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address}: {status}", file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 64
    return 0 if serving(*argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
