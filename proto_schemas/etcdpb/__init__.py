"""etcd v3 API protobuf definitions and their generated Python modules (tools/gen_proto.py)."""
