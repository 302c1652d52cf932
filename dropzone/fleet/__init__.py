"""What a fleet's operators plug into: Prometheus metrics and their export, the event feed,
post-import hooks and the webhook."""
