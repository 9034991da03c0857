"""The OCPP edge: framing, validation and per-version translation to domain services."""
