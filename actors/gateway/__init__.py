"""The gateway actor: the node's client endpoint."""
