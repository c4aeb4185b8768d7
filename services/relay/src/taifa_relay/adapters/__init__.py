"""The relay's only code that talks to Redis, the upstream MTA, the certificate files and Prometheus."""
