"""The watch hub actor: watchers caught up from history, then fed the live event stream."""
