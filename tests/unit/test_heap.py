"""`heap.settle()`: start-up objects frozen out of the collector's passes, young passes rarer,
the GIL's switch interval as given. Run in a fresh interpreter: these are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

from conduit.infra.heap import YOUNG_THRESHOLD

PROBE = """
import gc, json, sys
from conduit.infra import heap
before = gc.get_freeze_count()
heap.settle(switch_interval=0.002)
print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval()]))
"""


def test_settle_freezes_what_start_up_made_and_raises_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, threshold, switch_interval = json.loads(out.stdout)
    assert before == 0
    assert frozen > 1000  # the interpreter's and the imports' objects
    assert threshold[0] == YOUNG_THRESHOLD
    assert switch_interval == 0.002
