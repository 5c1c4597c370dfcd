#!/usr/bin/env python3
"""Runs one MPI test program (usually under mpirun) and checks how it ended.

run_mpi.py [--rc N | --rc-nonzero] [--expect REGEX]... [--within SECONDS] -- command...

The job must end within SECONDS (it is killed and the test fails otherwise: a hang is a failure,
never a wait), with the exit status asked for, and its output must match every REGEX.
"""
import argparse
import re
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rc", type=int, default=0)
    parser.add_argument("--rc-nonzero", action="store_true")
    parser.add_argument("--expect", action="append", default=[])
    parser.add_argument("--within", type=float, default=240)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.monotonic()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=args.within)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(out)
        print(f"FAIL: the job did not end within {args.within} s")
        return 1
    elapsed = time.monotonic() - start
    print(done.stdout)
    print(f"exit status {done.returncode} after {elapsed:.1f} s")
    failed = False
    if args.rc_nonzero:
        if done.returncode == 0:
            print("FAIL: expected a non-zero exit status")
            failed = True
    elif done.returncode != args.rc:
        print(f"FAIL: expected exit status {args.rc}")
        failed = True
    for pattern in args.expect:
        if not re.search(pattern, done.stdout, re.MULTILINE):
            print(f"FAIL: the output does not match {pattern!r}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
