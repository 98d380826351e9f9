"""zkpy-bench cpu's /proc accounting (zkpy.bench.cpu): the parts that read and sum process CPU."""

import os
import subprocess
import sys
import time

from zkpy.bench import cpu


def test_proc_cpu_reads_own_process():
    t0 = time.process_time()
    while time.process_time() - t0 < 0.05:   # burn a little CPU so utime moves off zero
        pass
    seconds, ppid, pgid = cpu._proc_cpu(os.getpid())
    assert seconds > 0
    assert ppid == os.getppid()
    assert pgid == os.getpgid(0)


def test_proc_cpu_of_missing_process_is_none():
    assert cpu._proc_cpu(2 ** 22 + 12345) is None


def test_group_cpu_finds_a_child_in_its_own_group_and_roles_split_it():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"],
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        snap = {}
        while child.pid not in snap and time.monotonic() < deadline:
            snap = cpu.group_cpu(child.pid)
        assert list(snap) == [child.pid]          # nothing else is in its new group
        assert os.getpid() not in cpu.group_cpu(child.pid)
        roles = cpu._roles({child.pid: (1.5, 1), 99: (0.25, child.pid), 98: (0.25, child.pid)},
                           child.pid, ("core", "workers"))
        assert roles == {"core": 1.5, "workers": 0.5}
    finally:
        child.kill()
        child.wait()


def test_a_process_that_ends_in_the_window_is_reported():
    before = {10: (1.0, 1), 11: (5.0, 10), 12: (5.0, 10)}
    assert cpu.ended_processes(before, dict(before)) == []
    after = {10: (1.2, 1), 11: (5.5, 10), 13: (0.1, 10)}   # 13 started: all its time counts
    assert cpu.ended_processes(before, after) == [12]      # 12 exited: its 5 s would vanish


def test_window_samples_take_the_first_and_last_reading_inside_the_run_s_window():
    samples = [(t, {"t": t}, {}) for t in (100, 200, 300, 400, 500)]
    first, last = cpu.window_samples(samples, [150, 450])
    assert (first[0], last[0]) == (200, 400)
    assert cpu.window_samples(samples, [150, 250]) is None    # one reading inside: no span
    assert cpu.window_samples(samples, None) is None           # a report without a window
