"""`python -m benchmarks.peak_rss OUT -- COMMAND...`: run COMMAND, then write to OUT the peak
resident memory (KiB) of COMMAND and of every descendant it waited for.

An RQ worker forks a work-horse per job and waits for it, so the kernel carries each horse's
high-water mark up to the worker and from the worker up to this process
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``): the largest process of the tree, never missed
between samples. SIGTERM/SIGINT sent to the process group reach COMMAND too; this wrapper only
waits for it to finish.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m benchmarks.peak_rss OUT -- COMMAND [ARG...]")
    out, command = Path(sys.argv[1]), sys.argv[3:]
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)  # the child got it as well; wait for it
    code = subprocess.Popen(command).wait()
    out.write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    return code


if __name__ == "__main__":
    sys.exit(main())
