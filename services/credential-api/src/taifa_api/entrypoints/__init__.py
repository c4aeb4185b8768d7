"""Taifa Mail credential API."""
