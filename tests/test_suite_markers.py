"""The suite's own rule for its fast loop (``tests/conftest.py``): a test that opens a server or
starts a process must be marked ``e2e``; tests using a server fixture are marked for it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e  # runs pytest in a subprocess

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    e2e: real servers\n    slow: slow\n")
    pytester.makepyfile(test_sample='''
        import socket, subprocess, sys
        import pytest

        def test_unmarked_process():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        @pytest.mark.e2e
        def test_marked_process():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        def test_unmarked_server():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen()

        def test_plain():
            assert 1 + 1 == 2

        @pytest.fixture
        def chrome():
            return None

        def test_with_a_server_fixture(chrome):
            assert chrome is None
    ''')
    return pytester


def test_an_unmarked_test_that_starts_a_process_or_a_server_fails(suite: pytest.Pytester) -> None:
    res = suite.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(passed=3, failed=2)
    out = res.stdout.str()
    assert "test_unmarked_process is not marked e2e but started 1 server(s) or process(es), first: process:" in out
    assert "test_unmarked_server is not marked e2e" in out and "listening socket" in out


def test_the_fast_loop_leaves_out_e2e_and_server_fixture_tests(suite: pytest.Pytester) -> None:
    res = suite.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not e2e", "-k", "not unmarked")
    res.assert_outcomes(passed=1, deselected=4)
