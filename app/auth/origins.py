"""Browser origins: one canonical spelling, so a configured origin and a header compare equal.

Browsers send `Origin: scheme://host[:port]` with the default port left out. Schemes other than
http(s) occur too (`capacitor://localhost`, `chrome-extension://<id>`), and so does `null` (file
pages, sandboxed frames): each is allowed only when listed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ANY_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """`scheme://host[:port]` in lower case without a default port; ValueError if not an origin."""
    if text in (ANY_ORIGIN, "null"):
        return text
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin like https://app.example.com") from None
    if not parts.scheme or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{text!r} is not an origin like https://app.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r} has a path: an origin is only scheme://host[:port]")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request's `Origin` header value is on a normalized allow-list."""
    if ANY_ORIGIN in allowed:
        return True
    try:
        return normalize_origin(origin) in allowed
    except ValueError:
        return False
