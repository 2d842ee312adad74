"""The raft actor: a pure Raft core (``rawnode``, ``raft``, ``log``, ``storage``,
``progress``, ``quorum``, ``readonly``) and its ZeroMQ shell (``shell``).

The core never does I/O; see ``rawnode.py`` for the contract with the shell.
"""
