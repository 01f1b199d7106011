"""Fixtures' building blocks shared by every test area, one job per module. `tests/` is on sys.path (pytest's
default "prepend" import mode puts the root conftest's directory there), so tests import `testkit.<module>`;
an area's own `*_helpers.py` keeps only what is specific to that area."""
