"""Prometheus metrics of the ledger: its writes, its spool, and tokens by model and modality.

Labels are bounded by configuration: `project` by the projects file, `model` by the models a
project may use (the setup policy refuses others), `kind` and `modality` by usage.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A batch upsert takes a millisecond on a local database, seconds on a struggling one.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_written_total = Counter(
            "relay_ledger_records_written_total",
            "Session records (checkpoints and final records) written to the ledger's database, "
            "replays from the spool included.",
            registry=registry,
        )
        self.records_spooled_total = Counter(
            "relay_ledger_records_spooled_total",
            "Session records written to the local spool because the database was unreachable.",
            registry=registry,
        )
        self.records_lost_total = Counter(
            "relay_ledger_records_lost_total",
            "Session records dropped, by reason: superseded (a checkpoint dropped from a full "
            "queue; a later version of the same session carries its usage), spool_full or "
            "spool_unwritable.",
            ["reason"],
            registry=registry,
        )
        self.backlog = Gauge(
            "relay_ledger_backlog",
            "Session records waiting: in the writer's queue plus in this process's spool.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.write_seconds = Histogram(
            "relay_ledger_write_seconds",
            "Time of one batch write to the ledger's database (successful or not).",
            registry=registry,
            buckets=WRITE_BUCKETS,
        )
        self.budget_used = Gauge(
            "relay_budget_used",
            "A project's use of its budget in the current UTC day or month (tokens, or USD for "
            "usd_per_month), as the quota store counts it across replicas; set when the "
            "project's sessions are admitted or report usage.",
            ["project", "budget"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.budget_limit = Gauge(
            "relay_budget_limit",
            "A project's budget: tokens_per_day, tokens_per_month or usd_per_month.",
            ["project", "budget"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.usage_tokens_total = Counter(
            "relay_usage_tokens_total",
            "Tokens the upstream reported in usageMetadata, by project, model, kind (prompt, "
            "response, cached, thinking, tool_use) and modality (TEXT, AUDIO, VIDEO, IMAGE, or "
            "unspecified: the part of a kind's count its details do not attribute).",
            ["project", "model", "kind", "modality"],
            registry=registry,
        )
