"""The WAL writer actor: ``records`` (framing, pure), ``files`` (segments on disk, replay),
``core`` (group commit, pure), ``shell`` (the ZeroMQ loop)."""
