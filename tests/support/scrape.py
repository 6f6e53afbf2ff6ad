"""Read a real relay's /metrics the way Prometheus does."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(
    url: str, token: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at `url`: (name, labels) -> value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, headers=headers)
    answer.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sample `name{labels}`, 0 when absent (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
