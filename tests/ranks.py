"""Several gloo processes on the CPU, as torchrun would start them, for the 2-process tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path


def run_ranks(argv: list[str], folder: Path, processes: int = 2, timeout: float = 300,
              expect: int | None = 0) -> list[Path]:
    """Run ``argv`` once per rank with the environment torchrun would set (one process per
    rank, no launcher agent in between, so a rank that fails is seen here with its own exit
    code and output); accelerate reads it and uses gloo on the CPU. Returns each rank's log
    (files, not pipes: a full pipe blocks a rank); a rank that outlives ``timeout``, or whose
    exit status is not ``expect`` (None: any status), fails the test with its log's end."""
    with socket.socket() as probe:  # a free port: concurrent test runs must not collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    common = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(processes),
              "LOCAL_WORLD_SIZE": str(processes)}
    logs = [folder / f"rank{r}.log" for r in range(processes)]
    ranks = []
    for r, log in enumerate(logs):
        with log.open("w") as out:
            ranks.append(subprocess.Popen(argv, env={**common, "RANK": str(r), "LOCAL_RANK": str(r)},
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    timed_out = False
    try:
        for rank in ranks:
            rank.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        for rank in ranks:
            os.killpg(rank.pid, signal.SIGKILL)  # nothing left behind
            rank.wait()
    for r, (rank, log) in enumerate(zip(ranks, logs)):
        if rank.returncode < 0:
            why = f"outlived the {timeout} s timeout" if timed_out else f"died of {signal.Signals(-rank.returncode).name}"
            raise AssertionError(f"rank {r} {why}:\n{log.read_text()[-4000:]}")
        assert expect is None or rank.returncode == expect, \
            f"rank {r} exited with {rank.returncode}:\n{log.read_text()[-4000:]}"
    return logs
