"""The client edge: bounded protocols, handshake pacing, the per-frame policy, the Gemini
dialect, tenant-bound resumption handles, and refusals."""
