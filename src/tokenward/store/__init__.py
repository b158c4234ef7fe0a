"""Storage: small Protocols, each with memory and durable backends."""
