"""The metrics actor: gathers every actor's reports and serves them in Prometheus' format."""
