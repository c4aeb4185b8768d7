"""Taifa Mail projector: Kafka events into PostgreSQL read models and the Redis auth cache."""
