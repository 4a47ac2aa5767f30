"""``python -m tap_mixpanel_profiles.simulator [flags]``: run the simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
