"""Authentication and role-based permissions (etcd's auth store): pure logic shared by the
gateway (checks every request) and the MVCC backend (applies auth changes, checks again)."""
