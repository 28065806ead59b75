# A firmware test that must fail: tests/test_harness.py runs pytest on it and expects the run to
# fail with the MicroPython traceback. Not collected by a normal `make test`.


def _inner():
    raise AssertionError("deliberate failure 0x10000*0x10000")


def test_passes():
    assert 1 + 1 == 2


def test_fails_on_purpose():
    _inner()
