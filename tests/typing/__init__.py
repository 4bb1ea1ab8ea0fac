"""Typing tests: typedflow's types are part of its contract, so they are tested like behaviour.

- ``pass_*.py`` must pass ``mypy --strict``; their ``assert_type(...)`` lines pin the
  exact types the public API gives back (``Counter``, never ``Any``). Their ``check_*``
  functions also run, so the types describe what really happens.
- ``fail_*.py`` hold deliberate mistakes, one per line, each marked
  ``# type: ignore[<code>]  # <why it must fail>``. ``warn_unused_ignores`` is on, so a
  mistake that mypy stops reporting breaks the check.

Both kinds are checked by the project's mypy run and by ``tests/test_typing_gate.py``,
which also strips the ignores from the ``fail_*`` files and checks that every marked line
is reported with exactly the marked error code.
"""
