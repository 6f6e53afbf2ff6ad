"""A storm's report cuts the streaming sessions' round trips at the storm's start and end."""

from __future__ import annotations

from app.loadtest.config import LoadConfig
from app.loadtest.recorder import Recorder
from app.loadtest.report import build_report

MS = 1_000_000


async def test_round_trips_are_split_by_when_their_frame_was_sent() -> None:
    config = LoadConfig(url="ws://127.0.0.1:1/live", sessions=1, storm_sessions=2)
    recorder = Recorder(config.sessions, config.storm_sessions)
    recorder.start_window()
    assert recorder.window_start_ns is not None
    start = recorder.window_start_ns
    for offset_ms, latency_ms in [(10, 1), (20, 2), (30, 3)]:  # before the storm
        recorder.frame_answered(start + offset_ms * MS, start + (offset_ms + latency_ms) * MS)
    recorder.storm.start()
    # The clock is the test's: the storm starts 100 ms into the window and lasts 100 ms.
    storm_start = recorder.storm.started_ns = start + 100 * MS
    for offset_ms, latency_ms in [(1, 40), (2, 50)]:  # during it
        sent = storm_start + offset_ms * MS
        recorder.frame_answered(sent, sent + latency_ms * MS)
    recorder.session_opened(3 * MS, 7 * MS, storm=True)
    recorder.session_failed_to_open("refused: HTTP 429", storm=True)
    assert recorder.storm.all_settled.is_set()
    assert recorder.storm.ended_ns is not None
    recorder.storm.ended_ns = storm_start + 100 * MS
    after = recorder.storm.ended_ns + 5 * MS
    recorder.frame_answered(after, after + 9 * MS)  # after it: in neither part
    recorder.end_window()

    report = build_report(config, recorder)

    storm = report.storm
    assert storm is not None
    assert (storm.requested, storm.opened, storm.failed) == (2, 1, 1)
    assert (storm.setup.count, storm.setup.p50, storm.connect.p50) == (1, 7.0, 3.0)
    assert (storm.streaming_before.count, storm.streaming_before.p99) == (3, 3.0)
    assert (storm.streaming_during.count, storm.streaming_during.p99) == (2, 50.0)
    assert storm.added_p99_ms == 47.0
    assert report.latency.count == 6
    assert report.errors == {"storm: refused: HTTP 429": 1}
    assert report.sessions_opened == 0  # storm sessions are counted apart
    assert report.as_dict()["storm"]["streaming_added_p99_ms"] == 47.0


def test_a_run_without_a_storm_reports_none() -> None:
    config = LoadConfig(url="ws://127.0.0.1:1/live")
    assert build_report(config, Recorder(1)).as_dict()["storm"] is None
