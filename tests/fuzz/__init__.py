"""Fuzz harnesses: one `fuzz_<target>.py` per target, each with `check(data)`.

`check` raises only when it finds a bug: an exception the target's contract does not
allow, a broken invariant, or super-linear time (see `harness.py`). The same function
serves three runners: atheris (`python -m tests.fuzz TARGET`, `make fuzz`), the
bounded run in `make test` (test_bounded.py) and the replay of every file in
`corpus/<target>/` under pytest (test_corpus.py), which makes each found bug a
regression test.
"""
