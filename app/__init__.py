"""live-relay: a self-hosted gateway for the Gemini Live API on Vertex AI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("live-relay")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
