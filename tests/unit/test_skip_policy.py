"""CI's skip policy (tests/conftest.py, ZKPY_STRICT_SKIPS=1): a skip that tests/allowed_skips.txt
does not allow fails the run; an allowed one does not. Run on test_fastcodec.py with the pure
twins, where its tests skip ("zkpy.proto._fastcodec not loaded")."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def _run(tmp_path, rules):
    allowed = tmp_path / "allowed.txt"
    allowed.write_text(rules)
    env = dict(os.environ, ZKPY_PURE="1", ZKPY_STRICT_SKIPS="1",
               ZKPY_ALLOWED_SKIPS=str(allowed))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(TESTS / "unit" / "test_fastcodec.py"), "-k", "not golden"],
        cwd=str(TESTS.parent), env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_not_allowed_fails_the_run(tmp_path):
    proc = _run(tmp_path, "# nothing allowed\n")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "skip(s) not allowed by tests/allowed_skips.txt" in proc.stdout
    assert "zkpy.proto._fastcodec not loaded" in proc.stdout


def test_allowed_skips_pass_only_in_the_pure_run(tmp_path):
    assert _run(tmp_path, "pure: _fastcodec not loaded\n").returncode == 0
    assert _run(tmp_path, "_fastcodec not loaded\n").returncode == 0


def test_the_repositorys_list_allows_the_pure_runs_skips(tmp_path):
    rules = (TESTS / "allowed_skips.txt").read_text()
    assert _run(tmp_path, rules).returncode == 0


def test_an_xfail_is_not_a_skip(tmp_path):
    """A strict xfail (a known bug written down as a test) must not fail the strict run: a test
    file of its own, with tests/conftest.py loaded as a plugin."""
    env = dict(os.environ, ZKPY_STRICT_SKIPS="1", ZKPY_ALLOWED_SKIPS=str(tmp_path / "none"),
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    (tmp_path / "none").write_text("# nothing allowed\n")
    test = tmp_path / "test_known_bug.py"

    def run(source):
        test.write_text(source)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
             "--rootdir", str(tmp_path), str(test)],
            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)

    proc = run("import pytest\n\n\n"
               "@pytest.mark.xfail(strict=True, reason='a known bug')\n"
               "def test_known_bug():\n"
               "    assert 1 + 1 == 3\n")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 xfailed" in proc.stdout
    # and the plugin is the one that fails a skip here
    proc = run("import pytest\n\n\ndef test_skipped():\n    pytest.skip('no reason allowed')\n")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "skip(s) not allowed by tests/allowed_skips.txt" in proc.stdout
