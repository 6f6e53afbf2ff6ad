"""`python -m app.emulator ...` is `live-relay emulator ...`."""

import sys

from app.cli import main

raise SystemExit(main(["emulator", *sys.argv[1:]]))
