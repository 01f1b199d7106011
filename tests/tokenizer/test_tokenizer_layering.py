"""`alm.tokenizer` sits below `alm.data`: importing all of it must not pull in the data pipeline."""

from __future__ import annotations

import subprocess
import sys


def test_the_tokenizer_layer_imports_nothing_from_data() -> None:
    code = (
        "import sys, alm.tokenizer, alm.tokenizer.train, alm.tokenizer.pieces, alm.tokenizer.special; "
        "print(sorted(m for m in sys.modules if m.startswith('alm.data')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
