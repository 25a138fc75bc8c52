#!/usr/bin/env python3
"""Run a command (stdin, stdout, stderr inherited) and report its peak RSS.

usage: peak_rss.py OUT_FILE COMMAND [ARGS...]

Writes the peak resident set size of COMMAND and everything it waited for
(getrusage(RUSAGE_CHILDREN).ru_maxrss, KiB on Linux) to OUT_FILE; exits
with COMMAND's status.
"""
import resource
import subprocess
import sys


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    rc = subprocess.call(argv[1:])
    with open(argv[0], "w") as f:
        f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
