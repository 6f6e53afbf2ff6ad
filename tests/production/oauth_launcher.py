"""`python -m tests.production.oauth_launcher serve`: the real `live-relay` CLI, with google-auth's
fixed OAuth2 token endpoint pointed at a local test server.

An `authorized_user` ADC file (what `gcloud auth application-default login` writes) always
refreshes against Google's endpoint: google-auth overwrites the file's `token_uri` with a module
constant. google-auth is not ours, so the test replaces that constant inside the relay process,
from `TEST_OAUTH2_TOKEN_ENDPOINT`, and runs the unchanged CLI.
"""

from __future__ import annotations

import os
import sys

import google.oauth2.credentials

from app.cli import main


def run() -> int:
    endpoint = os.environ["TEST_OAUTH2_TOKEN_ENDPOINT"]
    google.oauth2.credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT = endpoint
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(run())
