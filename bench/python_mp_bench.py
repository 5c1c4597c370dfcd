#!/usr/bin/env python3
"""Python's multiprocessing measured the way mproc_bench measures mproc.

Prints one JSON line per figure, {"name", "impl": "python", "value", "unit", "min", "max",
"rounds", "iterations"}, with the figure names of mproc_bench, so that bench/report can put them
side by side. The method is mproc_bench's: each figure's batch size is calibrated to last at least
--min-time, and the value is the median over --rounds batches of the cost per iteration.
Processes are started with the fork start method, as mproc starts them. Standard library only.
"""

import argparse
import json
import math
import multiprocessing
import signal
import statistics
import sys
import time

FORK = multiprocessing.get_context("fork")

FIGURES = []


def figure(name, unit, description):
    """Registers a batch function: batch(iterations) -> seconds the measured part took."""

    def register(batch):
        FIGURES.append({"name": name, "unit": unit, "description": description, "batch": batch})
        return batch

    return register


def time_loop(iterations, op):
    start = time.perf_counter()
    for _ in range(iterations):
        op()
    return time.perf_counter() - start


def noop():
    pass


def block_until_killed():
    while True:
        signal.pause()


@figure("process.start_join.fork", "us/process", "Process(target=noop): start() + join(), fork context")
def start_join_fork(iterations):
    def start_join():
        child = FORK.Process(target=noop)
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the child's exit code is {child.exitcode}, not 0")

    return time_loop(iterations, start_join)


def start_join_with(context, iterations):
    def start_join():
        child = context.Process(target=noop)
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the child's exit code is {child.exitcode}, not 0")

    return time_loop(iterations, start_join)


@figure("process.start_join.spawn", "us/process", "Process(target=noop): start() + join(), spawn context")
def start_join_spawn(iterations):
    return start_join_with(multiprocessing.get_context("spawn"), iterations)


@figure("process.start_join.forkserver", "us/process",
        "Process(target=noop): start() + join(), forkserver context (server already running)")
def start_join_forkserver(iterations):
    context = multiprocessing.get_context("forkserver")
    start_join_with(context, 1)  # the server starts once, outside the timing
    return start_join_with(context, iterations)


@figure("process.is_alive", "ns/call", "is_alive() on a running child, fork context")
def is_alive(iterations):
    child = FORK.Process(target=block_until_killed)
    child.start()

    def check():
        if not child.is_alive():
            raise RuntimeError("the child is not alive")

    took = time_loop(iterations, check)
    child.kill()
    child.join()
    return took


def to_unit(unit, seconds_per_iteration):
    if unit.startswith("us/"):
        return seconds_per_iteration * 1e6
    if unit.startswith("ns/"):
        return seconds_per_iteration * 1e9
    if unit.startswith("ms/"):
        return seconds_per_iteration * 1e3
    if unit.endswith("/s"):
        return 1 / seconds_per_iteration
    raise ValueError(f"no conversion for unit {unit!r}")


def calibrate(batch, min_time):
    """Grows the batch until one lasts min_time; the batches on the way are the warm-up. The count
    is sized from the fastest batch seen, so one batch slowed by other work on the machine does
    not leave the figure with too few iterations."""
    iterations = 1
    fastest_per_iteration = math.inf
    while True:
        took = batch(iterations)
        fastest_per_iteration = min(fastest_per_iteration, took / iterations)
        if took >= min_time or iterations >= 1 << 32:
            wanted = math.ceil(min_time / max(fastest_per_iteration, 1e-12))
            return max(iterations, min(wanted, 1 << 32))
        # 20% past min_time, so the next batch is usually the last; at most tenfold per step.
        growth = min(max(1.2 * min_time / took, 1.5), 10.0) if took > 0 else 10.0
        iterations = max(iterations + 1, int(iterations * growth))


def measure(fig, rounds, min_time, fixed_iterations):
    if fixed_iterations:
        iterations = fixed_iterations
        fig["batch"](iterations)  # warm-up
    else:
        iterations = calibrate(fig["batch"], min_time)
    values = []
    for _ in range(rounds):
        value = to_unit(fig["unit"], fig["batch"](iterations) / iterations)
        if not math.isfinite(value):
            raise RuntimeError("a batch took no measurable time; raise --min-time or --iterations")
        values.append(value)
    return {
        "name": fig["name"],
        "impl": "python",
        "value": float(f"{statistics.median(values):.6g}"),
        "unit": fig["unit"],
        "min": float(f"{min(values):.6g}"),
        "max": float(f"{max(values):.6g}"),
        "rounds": rounds,
        "iterations": iterations,
    }


def positive(kind):
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"wants a positive number, not {text!r}")
        return value

    return parse


def main():
    parser = argparse.ArgumentParser(
        description="Measures Python's multiprocessing (fork start method) for the figures of "
        "mproc_bench and prints JSON lines with impl \"python\".",
    )
    parser.add_argument("prefixes", nargs="*", metavar="NAME-PREFIX",
                        help='figures whose names start with it (all when none), e.g. "process."')
    parser.add_argument("--json", action="store_true", help="JSON lines (the default; accepted for symmetry with mproc_bench)")
    parser.add_argument("--table", action="store_true", help="a readable table instead of JSON lines")
    parser.add_argument("--rounds", type=positive(int), default=7, help="rounds per figure (default 7)")
    parser.add_argument("--min-time", type=positive(float), default=0.2, metavar="SECONDS",
                        help="least duration of one batch, sets the iteration count (default 0.2)")
    parser.add_argument("--iterations", type=positive(int), help="fixed iterations per batch (no calibration)")
    parser.add_argument("--list", action="store_true", help="print the figures and exit")
    args = parser.parse_args()

    selected = [f for f in sorted(FIGURES, key=lambda f: f["name"])
                if not args.prefixes or any(f["name"].startswith(p) for p in args.prefixes)]
    # Not fatal, so one command line can name areas only mproc_bench measures so far.
    for prefix in args.prefixes:
        if not any(f["name"].startswith(prefix) for f in selected):
            print(f"python_mp_bench: no figure matches {prefix!r}", file=sys.stderr)
    if not selected:
        print("python_mp_bench: nothing selected (try --list)", file=sys.stderr)
        return 2
    if args.list:
        for f in selected:
            print(f"{f['name']:<34} {f['unit']:<14} {f['description']}")
        return 0

    if args.table:
        print(f"{'figure':<34} {'median':>11} {'min':>11} {'max':>11}  {'unit':<14} rounds x iterations")
    status = 0
    for fig in selected:
        try:
            row = measure(fig, args.rounds, args.min_time, args.iterations)
        except Exception as error:  # one broken figure must not hide the others
            print(f"python_mp_bench: {fig['name']}: {error}", file=sys.stderr)
            status = 1
            continue
        if args.table:
            print(f"{row['name']:<34} {row['value']:>11.4g} {row['min']:>11.4g} {row['max']:>11.4g}  "
                  f"{row['unit']:<14} {row['rounds']} x {row['iterations']}")
        else:
            print(json.dumps(row))
        # A forked child must not inherit unwritten output.
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
