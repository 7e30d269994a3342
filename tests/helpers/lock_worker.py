"""Test harness: holds the lock of an output folder until its standard input closes.

    python -m tests.helpers.lock_worker OUTPUT_DIR

prints ``held`` once it holds the lock, then waits; killed (SIGKILL), it leaves the lock file behind, stale.
"""

from __future__ import annotations

import sys

from hf_magma.training.run_lock import acquire_output_lock, release_output_lock


def main(output_dir: str) -> None:
    acquire_output_lock(output_dir)
    print("held", flush=True)
    sys.stdin.read()
    release_output_lock(output_dir)


if __name__ == "__main__":
    main(sys.argv[1])
