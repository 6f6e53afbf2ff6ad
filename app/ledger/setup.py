"""Building the ledger from settings, for the app's lifespan."""

from __future__ import annotations

import logging

from app.ledger.ledger import Ledger
from app.ledger.metrics import LedgerMetrics
from app.ledger.prices import load_prices
from app.ledger.spool import Spool
from app.ledger.store import describe, open_ledger_store
from app.ledger.writer import LedgerWriter
from app.settings import Settings

logger = logging.getLogger(__name__)


async def open_ledger(settings: Settings, metrics: LedgerMetrics) -> Ledger:
    """The ledger `settings` ask for, its tasks started. The writer applies the migrations
    first thing, in the background: a database that is away delays nothing."""
    prices = load_prices(settings.ledger_prices_file)  # PricesFileError: start-up stops
    if settings.ledger_url is None:
        return Ledger(None, metrics, settings.ledger_checkpoint_seconds, prices)
    store = open_ledger_store(settings.ledger_url, timeout_seconds=settings.ledger_timeout_seconds)
    writer = LedgerWriter(
        store,
        Spool(settings.ledger_spool_dir, settings.ledger_spool_max_bytes),
        metrics,
        queue_size=settings.ledger_queue_size,
        batch_size=settings.ledger_batch_size,
        retry_seconds=settings.ledger_retry_seconds,
    )
    logger.info("ledger: %s", describe(settings.ledger_url))
    ledger = Ledger(writer, metrics, settings.ledger_checkpoint_seconds, prices)
    ledger.start()
    return ledger
