"""Between the handshake and the session: connections waiting to be admitted, and upstream
connections opened while the quota answers."""
