"""Background workers: each cluster's watch (`sync`), the one status writer it and the read fallbacks
share (`status`), and the outbox worker (`outbox`)."""
