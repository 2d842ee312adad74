"""The corruption checker actor: compares the members' backend hashes, as etcd's corruption checks do."""
