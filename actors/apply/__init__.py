"""The apply worker actor: committed entries, in log order, into the MVCC backend."""
