"""A child process that renders untrusted templates under a memory limit.

The sandbox bounds what it can see (`*`, format widths, the size of every value a
template builds), but one C-level call such as `'x'.ljust(10**9)` or a `batch` that fills
gigabytes cannot be interrupted from Python: only the operating system can stop it. So
templates render in a forked worker whose address space is limited (`RLIMIT_AS`); when
a render runs out of it, or runs past its deadline and does not stop, the worker is
killed and a fresh one is forked for the next template. One worker serves every
template of a command (and of later commands in the same process), so lint stays fast.

Where there is no `fork` (Windows) or no address-space limit, templates render in this
process, with the sandbox's bounds and deadline only.
"""
from __future__ import annotations

import atexit
import os
import pickle
import signal
import time
from typing import Any, Callable, Tuple

from .frames import read_frame, write_frame

MEMORY_MB = 128  # address space a render may add to the worker, in MiB
GRACE_SECONDS = 0.3  # past its own deadline, how long a stuck render gets before it is killed


class WorkerLost(Exception):
    """The worker died or was killed during a render."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # memory | time | crash


def _usable() -> bool:
    return hasattr(os, "fork") and os.path.exists("/proc/self/statm")


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """A forked child that runs `job(*args)` for each request and sends back its result."""

    def __init__(self, job: Callable[..., Any]) -> None:
        self.job = job
        self.pid = 0
        self.to_child = -1
        self.from_child = -1

    def _start(self) -> None:
        down_r, down_w = os.pipe()
        try:
            up_r, up_w = os.pipe()
        except OSError:
            os.close(down_r)
            os.close(down_w)
            raise
        try:
            pid = os.fork()
        except OSError:
            for fd in (down_r, down_w, up_r, up_w):
                os.close(fd)
            raise
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.close(down_w)
                os.close(up_r)
                self._serve(down_r, up_w)
            except BaseException:  # noqa: BLE001 - the parent sees end of file
                code = 1
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid, self.to_child, self.from_child = pid, down_w, up_r

    def _serve(self, inbox: int, outbox: int) -> None:  # pragma: no cover - runs in the child
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # The worker writes only to its pipe: a reader of fnl's output waits for fnl alone.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        try:
            import resource

            limit = _address_space() + MEMORY_MB * 1024 * 1024
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ImportError, OSError, ValueError):
            pass
        while True:
            request = read_frame(inbox)
            if request is None:
                return
            args = pickle.loads(request)
            try:
                reply: Tuple[str, Any] = ("ok", self.job(*args))
            except MemoryError:
                reply = ("memory", None)
            except BaseException as exc:  # noqa: BLE001 - sent back as the result
                reply = ("error", exc)
            try:
                payload = pickle.dumps(reply)
            except MemoryError:
                payload = pickle.dumps(("memory", None))
            except Exception as exc:  # noqa: BLE001 - an unpicklable result
                payload = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
            write_frame(outbox, payload)

    def stop(self) -> None:
        if not self.pid:
            return
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        self.pid = 0

    def run(self, seconds: float, *args: Any) -> Any:
        """`job(*args)` in the worker: its result, or the exception it raised. Raises
        WorkerLost when the worker ran out of memory, ran past `seconds` plus a grace
        period (it is killed), or died."""
        if self.pid and os.getpid() != self._owner:
            self.pid = 0  # forked from a process that had a worker: start our own
        if not self.pid:
            try:
                self._start()
            except OSError:  # no process or pipe to spare: render here, with the sandbox's bounds only
                return self.job(*args)
            self._owner = os.getpid()
        try:
            write_frame(self.to_child, pickle.dumps(args))
            reply = read_frame(self.from_child, time.monotonic() + seconds + GRACE_SECONDS)
        except TimeoutError:
            self.stop()
            raise WorkerLost("time") from None
        except OSError:
            reply = None
        if reply is None:
            self.stop()
            raise WorkerLost("memory")  # the kernel ended it: almost always the memory limit
        status, value = pickle.loads(reply)
        if status == "memory":
            self.stop()  # its heap may be fragmented or half-built: start clean next time
            raise WorkerLost("memory")
        if status == "error":
            raise value
        return value

    _owner = 0


_WORKERS: dict = {}


def run(job: Callable[..., Any], seconds: float, *args: Any) -> Any:
    """Run `job(*args)` in the shared worker for `job` (in this process where workers
    are not available). `job` must be a module-level function."""
    if not _usable():
        return job(*args)
    worker = _WORKERS.get(job)
    if worker is None:
        worker = _WORKERS[job] = Worker(job)
    return worker.run(seconds, *args)


@atexit.register
def _stop_all() -> None:
    for worker in _WORKERS.values():
        if worker._owner == os.getpid():
            worker.stop()
