"""The shared actor runtime: node config, logging, sockets and the one shell loop."""
