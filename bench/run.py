"""Entry point: `python bench/run.py [--smoke | --quick]` (or `python -m bench`).

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
