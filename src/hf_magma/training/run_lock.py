"""One writer per output folder: ``hf_magma_run.lock``, held by the process that saves (the main process under
``torchrun`` / ``accelerate launch``) from before it writes anything until its run ends.

The lock is an ``flock`` on the file, so the system releases it when its holder dies, however it dies; the file
names the holder (host, PID). A lock file that no process holds is stale (left by a killed run): it is named in the
log and taken over. A second run into the same folder is refused at once, with the holder named.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

LOCK_FILE = "hf_magma_run.lock"

_held: dict[str, list[Any]] = {}  # real path of the lock file -> [open file descriptor, how many times taken]
_guard = threading.Lock()


class OutputDirLockedError(ValueError):
    """Another run holds the output folder's lock."""


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process"
    return f"PID {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started', '?')})"


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _pid_running(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_output_lock(output_dir: str | os.PathLike) -> str:
    """Take the lock of ``output_dir`` (creating the folder), or refuse at once when another process holds it.

    Taking it again in the process that holds it only counts one more `release_output_lock`.

    Args:
        output_dir: the run folder.
    Returns:
        The path of the lock file.
    Raises:
        OutputDirLockedError: naming the folder, the holder (host, PID) and what to do.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.realpath(os.path.join(output_dir, LOCK_FILE))
    with _guard:
        if path in _held:
            _held[path][1] += 1
            return path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputDirLockedError(
                    f"--output_dir {output_dir} is in use by another run: {_describe(holder)} holds {path}. Wait "
                    "for it to end (or stop it), or give another --output_dir; two runs in one folder delete each "
                    "other's checkpoints."
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: take the new one
        previous = _read_holder(fd)
        if previous is not None:
            state = "is not running" if previous.get("host") != socket.gethostname() or not _pid_running(
                previous.get("pid")) else "is running but no longer holds it"
            logger.warning("Taking over the stale lock %s of %s: that process %s (a run that was killed?)", path,
                           _describe(previous), state)
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        os.fsync(fd)
        _held[path] = [fd, 1]
    return path


def release_output_lock(output_dir: str | os.PathLike) -> None:
    """Give back one `acquire_output_lock` of ``output_dir``; the last one removes the lock file.

    Args:
        output_dir: the run folder (a folder this process does not hold is ignored).
    """
    path = os.path.realpath(os.path.join(output_dir, LOCK_FILE))
    with _guard:
        entry = _held.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[path]
        try:
            os.unlink(path)  # while still locked: no other run can have taken this file meanwhile
        except FileNotFoundError:
            pass
        os.close(entry[0])


def holds_output_lock(output_dir: str | os.PathLike) -> bool:
    """Whether this process holds the lock of ``output_dir``."""
    return os.path.realpath(os.path.join(output_dir, LOCK_FILE)) in _held
