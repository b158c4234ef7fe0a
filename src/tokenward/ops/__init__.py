"""Operations: readiness, Prometheus metrics, refusal logs and optional tracing."""
