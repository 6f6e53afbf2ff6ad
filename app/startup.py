"""Start-up checks beyond what `Settings` validates: the files the settings point at.

`live-relay serve` runs them before binding its port and refuses to start with one message
naming every offending setting; `live-relay doctor` runs them as its first step; the deployment
examples' tests run them on the examples' values. None of them touches the network.
"""

from __future__ import annotations

from app.relay.vertex import check_vertex_settings
from app.settings import Settings, SettingsError


def check_startup(settings: Settings) -> None:
    """Raise `SettingsError` listing every problem found (each names its setting)."""
    problems: list[str] = []
    if settings.upstream == "vertex":
        try:
            check_vertex_settings(settings)
        except SettingsError as exc:
            problems.append(str(exc))
    if settings.metrics_enabled and settings.metrics_on_client_port and not settings.metrics_token:
        # Every project's names, sessions, token use and limits, on the port clients reach.
        problems.append(
            "RELAY_METRICS_ON_CLIENT_PORT=true serves /metrics where clients connect: set "
            "RELAY_METRICS_TOKEN too, or scrape RELAY_METRICS_PORT (the default) instead"
        )
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
