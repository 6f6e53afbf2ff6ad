"""`GET /v1/projects/{project}/usage/report` (admin token): the usage report, JSON or CSV."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.ledger.report import build_report, parse_group_by, parse_rfc3339, to_csv
from app.ledger.store import LedgerStoreError, ReportQuery
from app.relay.admin import admin_project
from app.relay.runtime import Relay
from app.web import error_response

router = APIRouter()


@router.get("/v1/projects/{project}/usage/report", response_model=None)
async def usage_report(project: str, request: Request) -> Response:
    relay: Relay = request.app.state.relay
    config = admin_project(relay, request, project)
    if isinstance(config, JSONResponse):
        return config
    writer = relay.ledger.writer
    if writer is None:
        return error_response(404, "the usage ledger is off: set RELAY_LEDGER_URL")
    params = request.query_params
    output = params.get("format", "json")
    if output not in ("json", "csv"):
        return error_response(400, "format must be json or csv")
    try:
        start = parse_rfc3339(_required(params.get("start"), "start"))
        end = parse_rfc3339(_required(params.get("end"), "end"))
        group_by = parse_group_by(params.getlist("groupBy"))
    except ValueError as exc:
        return error_response(400, str(exc))
    if end <= start:
        return error_response(400, "end must be after start")
    query = ReportQuery(project, start, end, group_by)
    try:
        prices = relay.ledger.prices.with_overrides(project, config.prices)
        report = await build_report(writer.store, prices, query)
    except LedgerStoreError:
        return error_response(503, "the usage ledger's database is unreachable; retry later")
    if output == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8")
    return JSONResponse(report)


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise ValueError(f"{name} is required (RFC 3339, e.g. 2026-12-01T00:00:00Z)")
    return value
