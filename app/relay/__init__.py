"""The relay proper: one client WebSocket joined to one upstream Live API connection.

Grouped by concern, each package importing only from those below it: the routes and the
runtime (this package's modules), then `session/` (the two pumps, the live sessions, the
drain), `admission/` (connections waiting to be admitted), `client/` (the client edge: bounded
protocols, the per-frame policy, the Gemini dialect, handles) and `upstream/` (the upstream
leg: connect, lean connection, resumption), and at the bottom `closes.py` and `sniff.py`, the
vocabulary both legs share.
"""
