"""How the relay is reached: the SMTP listeners, the health/metrics HTTP port and the `taifa-relay` CLI."""
