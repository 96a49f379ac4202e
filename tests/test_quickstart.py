"""The README's main command: the quickstart's rolling upgrade (short form), end to end."""

import os
import re
import signal
import subprocess
import sys

from tests.support.processes import REPO


def test_quickstart_upgrades_from_v1_to_v2_without_losing_an_order():
    result = subprocess.run([sys.executable, "examples/quickstart.py", "--quick"], cwd=REPO,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    placed, as_v1, as_v2 = map(int, re.search(r"orders placed: +(\d+) \((\d+) as v1.0, (\d+) as v2.0\)", out).groups())
    assert as_v1 > 0 and as_v2 > 0 and as_v1 + as_v2 == placed
    assert f"completed v1.0:   {as_v1}\n" in out
    assert f"completed v2.0:   {as_v2} ({as_v2} with the v2 fraud check)\n" in out
    assert "lost: 0, failed: 0\n" in out
    assert "v1 pool exit codes after draining: [0, 0]\n" in out
    # The v1 pool was stopped only once it had drained, and v2 orders went on completing after that.
    stop = out.index("No v1 order left: stopped the v1 pool")
    assert re.search(r"v1\.0: +0 in flight, +\d+ completed +\| +v2\.0: +\d+ in flight, +\d+ completed\n$", out[:stop])
    v2_completed = [int(n) for n in re.findall(r"v2\.0: +\d+ in flight, +(\d+) completed", out)]
    v2_completed_at_stop = int(re.findall(r"v2\.0: +\d+ in flight, +(\d+) completed", out[:stop])[-1])
    assert v2_completed[-1] == as_v2 > v2_completed_at_stop
    assert out.rstrip().endswith("Rolling upgrade complete: nothing lost.")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def test_interrupting_the_quickstart_stops_every_process_it_started():
    quickstart = subprocess.Popen([sys.executable, "examples/quickstart.py", "--quick"], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
    try:
        for line in quickstart.stdout:
            if line.startswith("v2 pool ready"):
                break
        started = children(quickstart.pid)
        assert len(started) == 5  # the server and two pools of two
        quickstart.send_signal(signal.SIGINT)
        assert quickstart.wait(30) == 130
        still_running = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
        assert still_running == []
    finally:
        quickstart.kill()
        quickstart.wait()
