"""One writer per output folder (`hf_magma.training.run_lock`): a second process is refused with the holder named,
a lock its dead holder left behind is named and taken over."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from hf_magma.training.run_guard import check_output_dir
from hf_magma.training.run_lock import (
    LOCK_FILE,
    OutputDirLockedError,
    acquire_output_lock,
    holds_output_lock,
    release_output_lock,
)
from tests.helpers import ROOT


def start_holder(output_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen([sys.executable, "-m", "tests.helpers.lock_worker", str(output_dir)], cwd=ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    holder = start_holder(out)
    try:
        with pytest.raises(OutputDirLockedError, match=rf"--output_dir .*out is in use by another run: PID "
                                                       rf"{holder.pid} on host {socket.gethostname()}"):
            acquire_output_lock(out)
        assert not holds_output_lock(out)
        check_output_dir(out)  # a folder holding only a lock is still an empty one
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid  # left behind by the killed holder
    acquire_output_lock(out)
    try:
        assert f"Taking over the stale lock {out / LOCK_FILE} of PID {holder.pid} on host" in caplog.text
        assert "that process is not running" in caplog.text
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        release_output_lock(out)
    assert not (out / LOCK_FILE).exists()


def test_the_holder_may_take_its_lock_again_and_the_last_release_removes_it(tmp_path):
    acquire_output_lock(tmp_path)
    acquire_output_lock(tmp_path)
    release_output_lock(tmp_path)
    assert (tmp_path / LOCK_FILE).is_file() and holds_output_lock(tmp_path)
    release_output_lock(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists() and not holds_output_lock(tmp_path)
    holder = start_holder(tmp_path)  # released, another process takes it at once
    holder.communicate("")
    assert holder.returncode == 0
