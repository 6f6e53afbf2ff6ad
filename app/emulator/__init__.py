"""An offline emulator of the Vertex AI Live API, for development and tests.

    from app.emulator import Emulator, EmulatorConfig, Faults

    async with Emulator(EmulatorConfig(connection_lifetime_seconds=5)) as emulator:
        ...  # point a client at emulator.base_url

See README.md, "Offline emulator", for the conventions it follows, and
docs/emulator-fidelity.md for what it imitates of Vertex (with sources) and what it does not.
"""

from app.emulator.config import EmulatorConfig, Faults
from app.emulator.server import Emulator
from app.emulator.stats import ConsumedMessage, EmulatorStats

__all__ = ["ConsumedMessage", "Emulator", "EmulatorConfig", "EmulatorStats", "Faults"]
