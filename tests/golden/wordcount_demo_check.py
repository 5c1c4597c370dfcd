#!/usr/bin/env python3
"""Checks wordcount_demo against an independent count.

    wordcount_demo_check.py BINARY DIR     run `BINARY --ext .rst DIR` and check what it prints
    wordcount_demo_check.py --mpirun MPIRUN BINARY DIR
                                           the same on the MPI pool: `MPIRUN -np 3 BINARY --mpi ...`,
                                           which also prints the MPI pool's line before the timings
    wordcount_demo_check.py --self-test    check that the checker rejects wrong output

The reference applies the word rules in Python (golden.reference_words, the same rules as example
25's golden test) to every *.rst file under DIR; the demo must print the same top-20 table (counts
descending, then words in alphabetical order), the same totals, and its timings.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import reference_words  # noqa: E402


def reference(directory: str) -> tuple[int, int, dict[str, int]]:
    """(files, bytes, counts) for the *.rst files under `directory`, hidden directories skipped."""
    files = bytes_ = 0
    counts: dict[str, int] = {}
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.endswith(".rst"):
                continue
            path = os.path.join(root, name)
            files += 1
            bytes_ += os.path.getsize(path)
            for word in reference_words(path):
                counts[word] = counts.get(word, 0) + 1
    return files, bytes_, counts


def expected_lines(directory: str) -> list[str]:
    files, bytes_, counts = reference(directory)
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:20]
    width = max((len(word) + 1 for word, _ in top), default=0)
    return ([f"Counting the words of {files} files ({bytes_:,} bytes)", f"  from {directory}: {files:,} files, {bytes_:,} bytes",
             "", f"TOP {len(top)} WORDS BY FREQUENCY", ""]
            + [f"{word:<{width}}: {count:>7,}" for word, count in top]
            + ["", f"files: {files}  bytes: {bytes_:,}  words: {sum(counts.values()):,}  distinct words: {len(counts):,}"])


TIMINGS = [
    re.compile(r"pool of \d+ workers: +\d+\.\d ms  \(\d+\.\d ms of it starting the workers\)\Z"),
    re.compile(r"one process: +\d+\.\d ms\Z"),
    re.compile(r"speedup: +\d+\.\d\dx  with \d+ workers \(best of 3 runs each\)\Z"),
    re.compile(r"CPUs busy counting: +\d+\.\d\d in the pool, \d+\.\d\d in one process  "
               r"\(\d+ CPUs here, load average \d+\.\d\d\)\Z"),
]
# Printed after the timings when the work took under 50 ms in one process.
LITTLE_WORK_NOTE = [
    "",
    "That is little work: starting the workers and adding up their tables weigh in it. Give it",
    "more text (wordcount_demo DIR...) and the speedup approaches the number of workers.",
]
# Printed after the timings instead when the workers had fewer CPUs than there are of them.
BUSY_MACHINE_NOTE = [
    "",
    "The workers had fewer CPUs than there are of them: other programs are using this machine's",
    "CPUs. On an idle machine the speedup approaches the number of workers.",
]


MPI_LINE = re.compile(r"MPI pool: \d+ workers on 2 serving ranks \(the counts equal the single process's\)\Z")


def check(out: str, err: str, rc: int, directory: str, mpi: bool = False) -> list[str]:
    errors = []
    if rc != 0:
        errors.append(f"exit status {rc}, expected 0")
    if err:
        errors.append(f"stderr should be empty (no progress bar off a terminal), got {err!r}")
    if not out.endswith("\n"):
        errors.append("stdout does not end with a newline")
    lines = out[:-1].split("\n") if out.endswith("\n") else out.split("\n")
    expected = expected_lines(directory)
    body, timings = lines[:len(expected)], lines[len(expected):]
    if mpi:
        if not timings or not MPI_LINE.match(timings[0]):
            errors.append(f"the MPI pool's line is missing: {timings[:1]}")
        timings = timings[1:]
    if body != expected:
        errors.append("the table or the totals differ from the independent count:\n"
                      + "\n".join(f"  expected {e!r}\n  actual   {a!r}" for e, a in zip(expected, body + [""] * len(expected)) if e != a))
    timings, note = timings[:len(TIMINGS)], timings[len(TIMINGS):]
    if len(timings) != len(TIMINGS) or not all(r.match(t) for r, t in zip(TIMINGS, timings)):
        errors.append(f"the timing lines are not as expected: {timings}")
    if note not in ([], LITTLE_WORK_NOTE, BUSY_MACHINE_NOTE):
        errors.append(f"unexpected lines after the timings: {note}")
    return errors


def self_test() -> int:
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wordcount_fixtures")
    good = "\n".join(expected_lines(fixtures) + [
        "pool of 2 workers:      9.6 ms  (0.6 ms of it starting the workers)",
        "one process:            11.0 ms",
        "speedup:                1.15x  with 2 workers (best of 3 runs each)",
        "CPUs busy counting:   1.71 in the pool, 0.98 in one process  (2 CPUs here, load average 0.31)",
    ] + LITTLE_WORK_NOTE) + "\n"
    problems = []
    if check(good, "", 0, fixtures):
        problems.append("a correct output was rejected: " + "; ".join(check(good, "", 0, fixtures)))
    rows = [ln for ln in good.split("\n") if re.match(r"[a-z]+ *: +[\d,]+\Z", ln)]
    tie = next(i for i in range(len(rows) - 1) if rows[i].split(":")[1] == rows[i + 1].split(":")[1])
    bad = {
        "exit status 1": (good, "", 1),
        "stray stderr": (good, "map [####] 100%\n", 0),
        "a count changed": (good.replace(rows[0], rows[0][:-1] + str((int(rows[0][-1]) + 1) % 10)), "", 0),
        "tie order reversed": (good.replace(rows[tie] + "\n" + rows[tie + 1], rows[tie + 1] + "\n" + rows[tie]), "", 0),
        "a word lost": (good.replace(rows[3] + "\n", ""), "", 0),
        "totals wrong": (re.sub(r"words: ([\d,]+)", "words: 1", good, count=1), "", 0),
        "no speedup line": (good[:good.rindex("speedup")], "", 0),
        "no worker count with the speedup": (good.replace("x  with 2 workers", "x"), "", 0),
        "no CPU line": (re.sub(r"CPUs busy.*\n", "", good), "", 0),
        "no source line": (re.sub(r"  from .*\n", "", good), "", 0),
        "a stray line at the end": (good + "done\n", "", 0),
    }
    mpi_good = good.replace("pool of 2 workers", "MPI pool: 4 workers on 2 serving ranks (the counts equal the single "
                                                  "process's)\npool of 4 workers")
    if check(mpi_good, "", 0, fixtures, mpi=True):
        problems.append("a correct MPI output was rejected: " + "; ".join(check(mpi_good, "", 0, fixtures, mpi=True)))
    if not check(good, "", 0, fixtures, mpi=True):
        problems.append("an MPI output without the MPI pool's line was accepted")
    for why, (out, err, rc) in bad.items():
        if not check(out, err, rc, fixtures):
            problems.append(f"a wrong output was accepted ({why})")
    print("\n".join(problems) or "wordcount_demo_check self-test: passed")
    return 1 if problems else 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    args = sys.argv[1:]
    mpirun = None
    if args[:1] == ["--mpirun"] and len(args) == 4:
        mpirun, args = args[1], args[2:]
    if len(args) != 2:
        print(__doc__)
        return 2
    binary, directory = args
    command = [binary, "--ext", ".rst", directory]
    if mpirun:
        command = [mpirun, "-np", "3", binary, "--mpi", "--ext", ".rst", directory]
    run = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    print(run.stdout + run.stderr)
    errors = check(run.stdout, run.stderr, run.returncode, directory, mpi=bool(mpirun))
    if errors:
        print("\n".join("* " + e for e in errors) + "\ndemo.wordcount: FAILED")
        return 1
    print("demo.wordcount: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
