"""What a running relay process holds, built by the app's lifespan and read by the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.authenticator import Authenticator
from app.ledger.budgets import Budgets
from app.ledger.ledger import Ledger
from app.metrics import RelayMetrics
from app.quota.keeper import QuotaKeeper
from app.quota.types import QuotaStore
from app.relay.admission.early_connect import EarlyConnects
from app.relay.admission.pending import PendingAdmissions
from app.relay.client.handles import ResumptionHandles
from app.relay.client.input_budget import InputBudget
from app.relay.session.registry import LiveSessions
from app.relay.upstream.replay_budget import ReplayBudget
from app.relay.upstream.upstream import UpstreamConnector
from app.relay.upstream.vertex import GoogleTokenSource
from app.settings import Settings


@dataclass(frozen=True)
class Relay:
    settings: Settings
    connector: UpstreamConnector
    authenticator: Authenticator
    quota: QuotaKeeper
    store: QuotaStore  # read directly only by the admin usage endpoint
    metrics: RelayMetrics
    sessions: LiveSessions
    google_tokens: GoogleTokenSource | None  # None when the upstream needs no Google credentials
    pending: PendingAdmissions  # connections authenticated but not yet admitted
    early_connects: EarlyConnects  # which sessions open their upstream before admission
    handles: ResumptionHandles  # the resumption handles clients see (tenant-bound)
    ledger: Ledger  # one usage record per session (docs/usage.md)
    budgets: Budgets  # tokens and cost per day and month, in the quota store
    replay_budget: ReplayBudget  # bytes every session's replay buffer holds, together
    input_budget: InputBudget  # bytes held for clients before they can go upstream, together
