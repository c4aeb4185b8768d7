"""The only code that knows SQL, Redis and Kafka."""
