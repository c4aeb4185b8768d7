"""The only code that knows SQL, Redis and Kafka; driver failures leave it as `StoreUnavailable` / `StoreRejected`."""
