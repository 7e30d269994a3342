"""Running the grid's jobs (cells, the pixel floor) in their own processes, side by side, readably: each job's full
output goes to its own log file, and the terminal gets one short line when a job starts, passes a quarter of its
training steps, starts evaluating, and ends."""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import logging
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

#: Which quarters of a job's training steps get a progress line.
PROGRESS_MARKS = (0.25, 0.5, 0.75)


@dataclass
class Job:
    """One call of the grid: ``function(*args, **kwargs)``, shown as ``label``, logging to ``log_file`` when it runs
    in its own process. A function that accepts ``progress`` gets a `Progress` to report through."""

    function: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    log_file: str | None = None


class Progress:
    """What a job reports to the terminal: ``stage("evaluating")`` and, as a `TrainerCallback` (`callback`), the
    quarters of its training steps. Without a queue (jobs run in this process) it reports nothing: the job's own
    log is on the terminal then."""

    def __init__(self, label: str, events: Any = None) -> None:
        self.label = label
        self.events = events

    def stage(self, text: str) -> None:
        if self.events is not None:
            self.events.put((self.label, "stage", text, time.time()))

    def callback(self) -> TrainerCallback:
        progress = self

        class ReportQuarters(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.marks = [m for m in PROGRESS_MARKS if m * state.max_steps > state.global_step]
                progress.stage(f"pretraining, {state.max_steps} steps" +
                               (f" (resumed at step {state.global_step})" if state.global_step else ""))

            def on_step_end(self, args, state, control, **kwargs):
                while self.marks and state.global_step >= self.marks[0] * state.max_steps:
                    mark = self.marks.pop(0)
                    if progress.events is not None:
                        progress.events.put((progress.label, "steps", (mark, state.global_step, state.max_steps),
                                             time.time()))

        return ReportQuarters()


@contextlib.contextmanager
def output_to(log_file: str | os.PathLike) -> Iterator[None]:
    """Send this process's stdout and stderr (Python's and the file descriptors 1 and 2 underneath, so that
    progress bars and libraries' own output follow) to ``log_file`` while the block runs."""
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", buffering=1) as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _reports_progress(function: Callable[..., Any]) -> bool:
    return "progress" in inspect.signature(function).parameters


def _init_worker(num_threads: int | None) -> None:
    logging.basicConfig(format="%(asctime)s %(processName)s %(name)s: %(message)s", level=logging.INFO)
    if num_threads is not None:
        torch.set_num_threads(num_threads)


def _run_logged(job: Job, events: Any) -> Any:
    """In a worker: run ``job`` with its output in its log file, reporting its start and end through ``events``."""
    events.put((job.label, "start", job.log_file, time.time()))
    with output_to(job.log_file) if job.log_file else contextlib.nullcontext():
        kwargs = dict(job.kwargs)
        if _reports_progress(job.function):
            kwargs["progress"] = Progress(job.label, events)
        try:
            result = job.function(*job.args, **kwargs)
        except BaseException as error:
            logger.exception("%s failed", job.label)
            events.put((job.label, "failed", f"{type(error).__name__}: {error}", time.time()))
            raise
    events.put((job.label, "done", result, time.time()))
    return result


def _minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def describe_result(result: Any) -> str:
    """``linear 70.30 %, k-NN 69.01 %`` for a cell's record, else ``""``."""
    if not isinstance(result, dict):
        return ""
    parts = [f"{name} {100 * result[key]:.2f} %" for name, key in (("linear", "linear_top1"), ("k-NN", "knn_top1"))
             if isinstance(result.get(key), (int, float))]
    return ", ".join(parts)


def _print_events(events: Any, stop: threading.Event, width: int, out: Any) -> None:
    started: dict[str, float] = {}
    while not stop.is_set() or not events.empty():
        try:
            label, kind, value, when = events.get(timeout=0.2)
        except queue_module.Empty:
            continue
        except (EOFError, OSError):  # the manager went away
            return
        name = f"  {label:<{width}}"
        if kind == "start":
            started[label] = when
            print(f"{name}  started (log: {value})" if value else f"{name}  started", file=out, flush=True)
        elif kind == "stage":
            print(f"{name}  {value}", file=out, flush=True)
        elif kind == "steps":
            mark, step, total = value
            elapsed = when - started.get(label, when)
            print(f"{name}  {mark:>4.0%}  step {step}/{total}, {_minutes(elapsed)}", file=out, flush=True)
        elif kind == "done":
            elapsed = when - started.get(label, when)
            result = describe_result(value)
            print(f"{name}  done in {_minutes(elapsed)}{': ' + result if result else ''}", file=out, flush=True)
        elif kind == "failed":
            print(f"{name}  FAILED: {value}", file=out, flush=True)


def run_jobs(jobs: Sequence[Job], processes: int, num_threads: int | None, out: Any = None) -> list[Any]:
    """Call each job: in this process with ``processes=1`` (or a single job), else in a pool of that many fresh
    (spawned) processes with ``num_threads`` torch threads each, each job's output in its ``log_file`` and one line
    per event on ``out`` (stdout). Returns the results in order; a failing job re-raises its error here once the
    others have finished."""
    if processes == 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            kwargs = dict(job.kwargs)
            if _reports_progress(job.function):
                kwargs["progress"] = Progress(job.label)
            results.append(job.function(*job.args, **kwargs))
        return results
    out = sys.stdout if out is None else out
    width = max(len(job.label) for job in jobs)
    logs = sorted({str(Path(job.log_file).parent) for job in jobs if job.log_file})
    if len(logs) > 2:  # a sweep: one folder per setting
        logs = [f"{os.path.commonpath(logs)}/<setting>"]
    print(f"{len(jobs)} jobs, {min(processes, len(jobs))} at a time; their full logs: {', '.join(logs) or '-'}",
          file=out, flush=True)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        events = manager.Queue()
        stop = threading.Event()
        printer = threading.Thread(target=_print_events, args=(events, stop, width, out), daemon=True)
        printer.start()
        try:
            with concurrent.futures.ProcessPoolExecutor(
                min(processes, len(jobs)), mp_context=context, initializer=_init_worker, initargs=(num_threads,)
            ) as pool:
                futures = [pool.submit(_run_logged, job, events) for job in jobs]
                concurrent.futures.wait(futures)
        finally:
            stop.set()
            printer.join(timeout=10)
    return [future.result() for future in futures]
