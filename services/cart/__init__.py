"""The cart service."""
