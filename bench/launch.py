"""Run a command and print its wall time, CPU time and peak RSS as the last line of JSON.

    launch.py [--cwd DIR] CMD ARG...

A child's peak RSS as Linux reports it starts at the peak of the process that spawned it
(exec keeps the old address space's high-water mark), so the big benchmark driver must not
spawn the measured commands itself: this small process does, and reads their rusage.
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cwd"]:
        os.chdir(argv[1])
        argv = argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        json.dumps({"wall": wall, "cpu": cpu, "maxrss_kib": usage.ru_maxrss, "exit": code}),
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
