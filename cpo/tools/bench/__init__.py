"""The load benchmark (`make bench`): our back office against the Python OCPP ceiling."""
