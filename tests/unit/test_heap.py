"""`heap.settle()`: start-up objects frozen out of the collector's passes, young passes rarer.
Run in a fresh interpreter: freezing is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

from conduit.infra.heap import YOUNG_THRESHOLD

PROBE = """
import gc, json
from conduit.infra import heap
before = gc.get_freeze_count()
heap.settle()
print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))
"""


def test_settle_freezes_what_start_up_made_and_raises_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, threshold = json.loads(out.stdout)
    assert before == 0
    assert frozen > 1000  # the interpreter's and the imports' objects
    assert threshold[0] == YOUNG_THRESHOLD
