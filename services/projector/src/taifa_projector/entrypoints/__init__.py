"""Process entry points: the consumer service, the health server and the CLI."""
