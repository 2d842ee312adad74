"""The MVCC backend actor: revisions and history on LevelDB."""
