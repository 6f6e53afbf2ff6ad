"""The upstream leg: connecting to Vertex AI (or the emulator), the lean connection, and
transparent resumption across connection ends."""
