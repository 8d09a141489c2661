"""Repository-wide pytest setup: find the data mirror beside the checkout (as CI does)."""

import os
from pathlib import Path

_MIRROR = Path(__file__).resolve().parent.parent / "shared" / "data"
if not os.environ.get("REPRO_DATA_MIRROR") and _MIRROR.is_dir():
    os.environ["REPRO_DATA_MIRROR"] = str(_MIRROR)
