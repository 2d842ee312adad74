"""The gRPC front door: etcd's v3 API (etcdserverpb) served by one process per member."""
