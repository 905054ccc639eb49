"""The blocked-process detector that lets ROB-SLOW-READER end its negative window early."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fixtures.process_activity import ActivitySample, BlockedDetector


class Sample(ActivitySample):
    def __init__(self, cpu_s: float, runnable: bool) -> None:  # no /proc: a scripted sample
        self.cpu_s = cpu_s
        self.runnable = runnable


def test_blocked_only_after_a_whole_quiet_window() -> None:
    detector = BlockedDetector(0.5)
    assert not detector.add(0.0, Sample(1.0, False))
    assert not detector.add(0.3, Sample(1.0, False))
    assert detector.add(0.5, Sample(1.01, False))


def test_a_runnable_thread_restarts_the_window() -> None:
    """A process starved of CPU is runnable, not blocked: it never ends the window early."""
    detector = BlockedDetector(0.5)
    for step in range(20):
        assert not detector.add(step * 0.1, Sample(1.0, runnable=step % 2 == 0))
    detector = BlockedDetector(0.5)
    assert not any(detector.add(step * 0.1, Sample(1.0, runnable=True)) for step in range(20))


def test_cpu_spent_in_the_window_restarts_it() -> None:
    detector = BlockedDetector(0.5, max_cpu_share=0.1)
    assert not detector.add(0.0, Sample(1.0, False))
    assert not detector.add(0.5, Sample(1.2, False))  # 0.2 s of CPU in 0.5 s: it worked (between samples)
    assert not detector.add(0.9, Sample(1.2, False))
    assert detector.add(1.0, Sample(1.2, False))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_sleeping_process_is_blocked_and_a_busy_one_is_not() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # both started
        verdicts = {}
        for name, process in (("sleeper", sleeper), ("spinner", spinner)):
            detector = BlockedDetector(0.3)
            start = time.monotonic()
            blocked = False
            while not blocked and time.monotonic() - start < 2.0:
                blocked = detector.add(time.monotonic(), ActivitySample(process.pid))
                time.sleep(0.05)
            verdicts[name] = blocked
        assert verdicts == {"sleeper": True, "spinner": False}
    finally:
        for process in (sleeper, spinner):
            process.kill()
            process.wait()
