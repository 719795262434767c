"""How many examples the property tests and the API fuzzer try.

The quick check, ``pytest -m "not slow"``, tries a quarter of each count, to stay well under
a minute; every other run tries them all, ``./dev.py test`` (CI's command) included. The
assertions are the same either way: only how many generated inputs meet them changes.
"""

QUICK_SHARE = 4

_quick = False


def use_quick_counts(mark_expression: str) -> bool:
    """Called once by tests/conftest.py, with ``-m``'s expression, before any test module loads."""
    global _quick
    _quick = "not slow" in mark_expression
    return _quick


def examples(full: int) -> int:
    """``full``, or a quarter of it (at least one) in the quick check."""
    return max(1, full // QUICK_SHARE) if _quick else full
