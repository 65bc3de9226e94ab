"""The embedded local Ray of a launch without --address: its settings and its fast stop.

Its own module, light to import (Ray only), so that the benchmark's bare Tune sweep and the
parts of the fixed cost it measures start and stop Ray exactly as `sweep launch` does without
importing the launcher's own modules (pydantic, the store, pyarrow's datasets).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any

import ray


def settings() -> None:
    """An embedded local Ray serves this process only: every server it starts (GCS, raylet, object
    manager, workers, runtime-env agent) listens on 127.0.0.1, not on all interfaces. Ray binds to
    its node address, which is the loopback once "cluster mode" is off (Ray's
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; the constant is read at call time, the variable by the
    processes Ray starts). Token authentication stays on (Ray's default) without its warning."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


# Tune's defaults that a sweep does not use: its automatic CSV, JSON and TensorBoard loggers (the
# store holds the results; the TensorBoard logger alone imports torch into the driver, 1.5 s of
# a one-seed sweep's 9 s, measured) and its new console output (a configuration box and a
# TensorBoard hint; memsweep prints its own progress lines). An environment that sets them wins.
# Also its warning that keeping one checkpoint forces an experiment snapshot at each checkpoint
# (it does, and they are small; the warning printed three lines per checkpoint).
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def stop() -> None:
    """`ray.shutdown()` for the Ray this process started, without its graceful waits.

    Ray's shutdown sends each of its servers SIGTERM and waits up to a second for each in turn
    (1.3 s of a one-seed sweep's 9 s, measured). By the time this runs the trials are over and
    their fragments stored, so the embedded Ray's processes and everything they started
    (workers, agents) are killed at once instead. Linux (/proc) only; elsewhere, or if Ray's
    internals differ from what this expects, the plain `ray.shutdown()`."""
    node = getattr(ray._private.worker, "_global_node", None)
    processes = getattr(node, "all_processes", None)
    if not os.path.isdir("/proc") or not isinstance(processes, dict):
        ray.shutdown()
        return
    ours = [info.process for infos in processes.values() for info in infos]

    def kill_all(**_: Any) -> None:
        # Only processes still running: a reaped one's PID may belong to someone else by now.
        for pid in descendants({p.pid for p in ours if p.poll() is None}):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in ours:
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    node.kill_all_processes = kill_all
    ray.shutdown()


def descendants(roots: set[int]) -> set[int]:
    """The processes `roots` and all their descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
