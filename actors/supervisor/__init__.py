"""The node supervisor: the ``etcdz`` command."""
