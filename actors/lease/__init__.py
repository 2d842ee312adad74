"""The lease expirer actor: the lease table with deadlines; the leader's proposes revokes."""
