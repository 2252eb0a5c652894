"""Generated from contracts/proto by ``make grpc-gen`` (scripts/grpc_gen.py): do not edit."""
