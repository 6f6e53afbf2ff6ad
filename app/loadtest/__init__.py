"""The load-test tool: simulated Live API voice sessions, timed frame by frame.

report = await run_load(LoadConfig(url="ws://127.0.0.1:9000/...", sessions=50))
print(render_table(report))
"""

from app.loadtest.config import LoadConfig
from app.loadtest.report import LoadReport, render_table
from app.loadtest.runner import Progress, run_load

__all__ = ["LoadConfig", "LoadReport", "Progress", "render_table", "run_load"]
