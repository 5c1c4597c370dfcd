#!/usr/bin/env python3
"""Python's multiprocessing measured the way mproc_bench measures mproc.

Prints one JSON line per figure, {"name", "impl": "python", "value", "unit", "min", "max",
"rounds", "iterations"}, with the figure names of mproc_bench, so that bench/report can put them
side by side. The method is mproc_bench's: each figure's batch size is calibrated to last at least
--min-time, and the value is the median over --rounds batches of the cost per iteration.
Processes are started with the fork start method, as mproc starts them. Standard library only.

Figures named "*.loaded" run beside one busy-looping process per CPU, as mproc_bench's do. A
figure whose rounds differ by more than 5x is bimodal: after all results it is named on stderr
with its min, median and max, and the exit status is 1 (--no-spread-check turns that off; the
check applies with 3 rounds or more and batches of 50 ms or more, as in mproc_bench).
"""

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time

FORK = multiprocessing.get_context("fork")

FIGURES = []


def figure(name, unit, description, bytes_per_iteration=None, loaded_twin=False, convert=None,
           fixed_iterations=None, spread_floor=0.0):
    """Registers a batch function: batch(iterations) -> seconds the measured part took. Figures in
    MB/s say how many bytes one iteration moves. With loaded_twin, "<name>.loaded" runs the same
    batches beside one busy-looping process per CPU. convert(seconds per iteration) gives the value
    for a unit to_unit does not know; fixed_iterations replaces the calibration (--iterations
    still wins). In the spread check, rounds below spread_floor count as spread_floor (for
    figures whose rounds can be zero, as mproc_bench's Figure::spread_floor)."""

    def register(batch):
        entry = {"name": name, "unit": unit, "description": description, "batch": batch,
                 "bytes_per_iteration": bytes_per_iteration, "convert": convert,
                 "fixed_iterations": fixed_iterations, "spread_floor": spread_floor, "loaded": False}
        FIGURES.append(entry)
        if loaded_twin:
            FIGURES.append(dict(entry, name=name + ".loaded", loaded=True,
                                description=description + "; beside one busy-looping process per CPU"))
        return batch

    return register


class CpuLoad:
    """One busy-looping child process per CPU this process may run on, for the loaded figures, as
    in mproc_bench: not pinned, started before the calibration, killed and reaped on leaving the
    with block however the figure ends. A burner whose parent is gone ends itself."""

    def __enter__(self):
        self.burners = []
        parent = os.getpid()
        try:
            for _ in range(len(os.sched_getaffinity(0))):
                pid = os.fork()
                if pid == 0:
                    try:
                        while os.getppid() == parent:
                            for _ in range(1_000_000):
                                pass
                    finally:
                        os._exit(0)
                self.burners.append(pid)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for pid in self.burners:
            os.kill(pid, signal.SIGKILL)
        for pid in self.burners:
            os.waitpid(pid, 0)
        self.burners = []
        return False


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


MEBIBYTE = 1 << 20


def _pingpong_child(conn, iterations):
    for _ in range(iterations):
        conn.send(conn.recv() + 1)


@figure("pipe.pingpong", "us/round_trip", "send(int) to a child and recv() its reply through a duplex Pipe(), fork context",
        loaded_twin=True)
def pipe_pingpong(iterations):
    parent_end, child_end = FORK.Pipe()
    child = FORK.Process(target=_pingpong_child, args=(child_end, iterations))
    child.start()
    took = _time_round_trips(iterations, parent_end.send, parent_end.recv)
    child.join()
    return took


def _time_round_trips(iterations, send, receive):
    """Times `iterations` requests (send) and replies (receive), each reply one more than its request."""
    value = 0

    def round_trip():
        nonlocal value
        send(value)
        reply = receive()
        if reply != value + 1:
            raise RuntimeError("wrong reply")
        value = reply

    return time_loop(iterations, round_trip)


def _throughput_child(conn, iterations):
    received = 0
    for _ in range(iterations):
        received += len(conn.recv_bytes())
    conn.send(received)


@figure("pipe.throughput.1mib", "MB/s", "send_bytes of 1 MiB messages to a child that recv_bytes them, duplex Pipe(), fork context",
        bytes_per_iteration=MEBIBYTE)
def pipe_throughput_1mib(iterations):
    parent_end, child_end = FORK.Pipe()
    child = FORK.Process(target=_throughput_child, args=(child_end, iterations))
    child.start()
    message = bytes(MEBIBYTE)
    start = time.perf_counter()
    for _ in range(iterations):
        parent_end.send_bytes(message)
    if parent_end.recv() != iterations * MEBIBYTE:
        raise RuntimeError("bytes lost")
    took = time.perf_counter() - start
    child.join()
    return took


@figure("lock.uncontended", "ns/op", "Lock(): acquire() + release(), one process")
def lock_uncontended(iterations):
    lock = FORK.Lock()
    acquire, release = lock.acquire, lock.release

    def op():
        acquire()
        release()

    return time_loop(iterations, op)


def _two_processes(iterations, op):
    """Each of two processes runs op() for half of `iterations`; the time from the start line until
    both are done (the child is started before it). As in mproc_bench, the two are pinned to two
    different CPUs, so that they run at the same time and really contend."""
    half = iterations // 2
    go = FORK.Event()
    saved = os.sched_getaffinity(0)
    cpus = sorted(saved)[:2]

    def work(count, cpu):
        if len(cpus) == 2:
            os.sched_setaffinity(0, {cpu})
        go.wait()
        for _ in range(count):
            op()

    child = FORK.Process(target=work, args=(half, cpus[-1]))
    child.start()
    if len(cpus) == 2:
        os.sched_setaffinity(0, {cpus[0]})
    try:
        start = time.perf_counter()
        go.set()
        for _ in range(iterations - half):
            op()
        child.join()
        took = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, saved)
    if child.exitcode != 0:
        raise RuntimeError(f"the child's exit code is {child.exitcode}")
    return took


@figure("lock.contended", "op/s", "2 processes, each: lock.acquire(), counter.value += 1 (RawValue('l')), "
        "lock.release(), fork context")
def lock_contended(iterations):
    lock = FORK.Lock()
    counter = FORK.RawValue("l", 0)

    def op():
        lock.acquire()
        counter.value += 1
        lock.release()

    took = _two_processes(iterations, op)
    if counter.value != iterations:
        raise RuntimeError("lost increments")
    return took


@figure("value.locked_increment", "op/s", "2 processes, each: with v.get_lock(): v.value += 1 on Value('l'), "
        "fork context")
def value_locked_increment(iterations):
    v = FORK.Value("l", 0)

    def op():
        with v.get_lock():
            v.value += 1

    took = _two_processes(iterations, op)
    if v.value != iterations:
        raise RuntimeError("lost increments")
    return took


def _event_child(ping, pong, iterations):
    for _ in range(iterations):
        ping.wait()
        ping.clear()
        pong.set()


@figure("event.pingpong", "us/round_trip", "two processes, two Events: set(ping), wait(pong), clear(pong) against "
        "wait(ping), clear(ping), set(pong), fork context", loaded_twin=True)
def event_pingpong(iterations):
    ping, pong = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_event_child, args=(ping, pong, iterations))
    child.start()

    def round_trip():
        ping.set()
        pong.wait()
        pong.clear()

    took = time_loop(iterations, round_trip)
    child.join()
    return took


def _pin_parent_and_child():
    """(saved affinity, parent's CPU, child's CPU): the two processes of a 1 -> 1 queue figure run
    on two different CPUs, as in mproc_bench (the CPUs are None when there are fewer than two)."""
    saved = os.sched_getaffinity(0)
    cpus = sorted(saved)[:2]
    return (saved, cpus[0], cpus[1]) if len(cpus) == 2 else (saved, None, None)


def _queue_producer(queue, go, iterations, cpu, message):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    go.wait()
    put = queue.put
    if message is None:
        for i in range(1, iterations + 1):
            put(i)
    else:
        for _ in range(iterations):
            put(message)


def _one_to_one(iterations, message, receive):
    """A child puts `iterations` messages (1..n, or `message`) behind a start line; the parent gets
    them, calling receive(got) on each. Returns (seconds from the start line to the last get,
    what the receives added up to)."""
    queue, go = FORK.Queue(), FORK.Event()
    saved, parent_cpu, child_cpu = _pin_parent_and_child()
    child = FORK.Process(target=_queue_producer, args=(queue, go, iterations, child_cpu, message))
    child.start()
    if parent_cpu is not None:
        os.sched_setaffinity(0, {parent_cpu})
    try:
        get = queue.get
        total = 0
        start = time.perf_counter()
        go.set()
        for _ in range(iterations):
            total += receive(get())
        took = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, saved)
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the producer's exit code is {child.exitcode}")
    return took, total


@figure("queue.throughput.small", "msg/s", "1 producer process -> 1 consumer process, Queue().put/get of ints, "
        "pinned to two CPUs, fork context", loaded_twin=True)
def queue_throughput_small(iterations):
    took, total = _one_to_one(iterations, None, int)
    if total != iterations * (iterations + 1) // 2:
        raise RuntimeError("messages lost")
    return took


def _mpmc_producer(queue, go, first, last):
    go.wait()
    put = queue.put
    for i in range(first, last + 1):
        put(i)
    put(-1)


def _mpmc_consumer(queue, go, results):
    go.wait()
    get = queue.get
    count = total = 0
    while True:
        value = get()
        if value == -1:
            break
        count += 1
        total += value
    results.put((count, total))


@figure("queue.throughput.mpmc", "msg/s", "2 producer processes -> 2 consumer processes, one Queue() of ints "
        "(not pinned), fork context")
def queue_throughput_mpmc(iterations):
    # Each producer ends with -1; each consumer stops at its first -1, so when both have stopped
    # every message was taken (each producer's -1 follows all its messages).
    queue, go, results = FORK.Queue(), FORK.Event(), FORK.SimpleQueue()
    half = iterations // 2
    children = [FORK.Process(target=_mpmc_producer, args=(queue, go, 1, half)),
                FORK.Process(target=_mpmc_producer, args=(queue, go, half + 1, iterations)),
                FORK.Process(target=_mpmc_consumer, args=(queue, go, results)),
                FORK.Process(target=_mpmc_consumer, args=(queue, go, results))]
    for child in children:
        child.start()
    start = time.perf_counter()
    go.set()
    (count1, total1), (count2, total2) = results.get(), results.get()
    took = time.perf_counter() - start
    for child in children:
        child.join()
    if count1 + count2 != iterations or total1 + total2 != iterations * (iterations + 1) // 2:
        raise RuntimeError("messages lost")
    return took


def _queue_pingpong_child(requests, replies, iterations):
    for _ in range(iterations):
        replies.put(requests.get() + 1)


@figure("queue.pingpong", "us/round_trip", "two processes, two Queue()s: put(request), get() the reply against "
        "put(get() + 1) (not pinned), fork context")
def queue_pingpong(iterations):
    requests, replies = FORK.Queue(), FORK.Queue()
    child = FORK.Process(target=_queue_pingpong_child, args=(requests, replies, iterations))
    child.start()
    took = _time_round_trips(iterations, requests.put, replies.get)
    child.join()
    return took


@figure("queue.throughput.1mib", "MB/s", "1 producer process -> 1 consumer process, Queue().put/get of 1 MiB "
        "bytes, pinned to two CPUs, fork context", bytes_per_iteration=MEBIBYTE, loaded_twin=True)
def queue_throughput_1mib(iterations):
    took, total = _one_to_one(iterations, bytes(MEBIBYTE), len)
    if total != iterations * MEBIBYTE:
        raise RuntimeError("bytes lost")
    return took


def square(x):
    return x * x


def burn(seed):
    # The arithmetic of mproc's pool.cpu figures, in Python: far slower per task, so the number to
    # compare is the speedup from 1 to 2 workers, not the time.
    x = seed + 1
    for _ in range(200_000):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return x >> 1


POOLS = {}


def pool_of(processes):
    if processes not in POOLS:
        POOLS[processes] = FORK.Pool(processes)
    return POOLS[processes]


@figure("pool.map.chunk1", "task/s", "Pool(2).map(square, n items, chunksize=1)")
def pool_map_chunk1(iterations):
    pool = pool_of(2)
    start = time.perf_counter()
    result = pool.map(square, range(iterations), chunksize=1)
    took = time.perf_counter() - start
    if len(result) != iterations:
        raise RuntimeError("wrong results")
    return took


@figure("pool.map.default", "task/s", "Pool(2).map(square, 100k items), default chunksize")
def pool_map_default(iterations):
    pool = pool_of(2)
    items = max(iterations, 100_000)
    start = time.perf_counter()
    result = pool.map(square, range(items))
    took = time.perf_counter() - start
    if len(result) != items:
        raise RuntimeError("wrong results")
    return took * iterations / items


@figure("pool.apply_async.rt", "us/call", "Pool(2).apply_async(square, (7,)).get()", loaded_twin=True)
def pool_apply_rt(iterations):
    pool = pool_of(2)

    def call():
        if pool.apply_async(square, (7,)).get() != 49:
            raise RuntimeError("wrong result")

    return time_loop(iterations, call)


def _threads_of_self():
    return set(os.listdir("/proc/self/task"))


def _cpu_seconds(pid, tid):
    """A thread's CPU time from the scheduler's statistics (nanoseconds); 0 once it has ended."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _process_cpu_seconds(pid):
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0.0
    return sum(_cpu_seconds(pid, tid) for tid in tids)


IDLE_SLICE = 0.010  # seconds of idleness per iteration, as in mproc_bench


@figure("pool.idle_cpu", "ms/idle_s", "CPU ms per second of a Pool(2) with nothing to do (after one apply), summed "
        "over the threads it started in this process (its handlers) and its worker processes (schedstat)",
        convert=lambda cpu_seconds_per_slice: cpu_seconds_per_slice * 1e3 / IDLE_SLICE, fixed_iterations=100,
        spread_floor=0.1)  # 0.1 ms of CPU a second is as good as none
def pool_idle_cpu(iterations):
    # A new pool each batch: its threads are those this process gained with it; the other
    # figures' pools idle meanwhile and are not counted.
    threads_before = _threads_of_self()
    pool = FORK.Pool(2)
    try:
        if pool.apply(square, (7,)) != 49:
            raise RuntimeError("wrong result")
        own_pid = os.getpid()
        pool_threads = _threads_of_self() - threads_before
        workers = [worker.pid for worker in pool._pool]

        def used():
            return sum(_cpu_seconds(own_pid, tid) for tid in pool_threads) + sum(map(_process_cpu_seconds, workers))

        time.sleep(0.2)  # as mproc_bench does, past whatever follows activity
        before = used()
        time.sleep(IDLE_SLICE * iterations)
        return used() - before
    finally:
        pool.terminate()
        pool.join()


def burn_batch(processes, iterations):
    pool = pool_of(processes)
    return time_loop(iterations, lambda: pool.map(burn, range(8), chunksize=1))


@figure("pool.cpu.workers1", "us/batch", "8 CPU-bound tasks on a Pool(1) (Python's own, slower, arithmetic)")
def pool_cpu_1(iterations):
    return burn_batch(1, iterations)


@figure("pool.cpu.workers2", "us/batch", "8 CPU-bound tasks on a Pool(2) (Python's own, slower, arithmetic)")
def pool_cpu_2(iterations):
    return burn_batch(2, iterations)


MANAGERS = {}


def _dict_ops(d, iterations):
    d[0] = 0
    start = time.perf_counter()
    for i in range(1, iterations + 1):
        if i % 2 == 0:
            d[i % 16] = i
        else:
            d.get(i % 16)
    return time.perf_counter() - start


def _dict_ops_child(d, iterations, conn):
    conn.send(_dict_ops(d, iterations))


def _shared_dict():
    if "dict" not in MANAGERS:
        manager = FORK.Manager()
        MANAGERS["dict"] = (manager, manager.dict())
    return MANAGERS["dict"][1]


@figure("manager.dict.op", "us/op", "a Manager().dict()'s set or get, from a child process, fork context")
def manager_dict_op(iterations):
    d = _shared_dict()
    parent_end, child_end = FORK.Pipe()
    child = FORK.Process(target=_dict_ops_child, args=(d, iterations, child_end))
    child.start()
    took = parent_end.recv()
    child.join()
    return took


def _dict_ops_behind_a_start_line(d, iterations, ready, go, done):
    d[0] = 0
    ready.put(True)
    go.wait()
    for i in range(1, iterations + 1):
        if i % 2 == 0:
            d[i % 16] = i
        else:
            d.get(i % 16)
    done.put(True)


@figure("manager.concurrent", "op/s", "4 client processes doing d[k] = v / d.get(k) alternately on one "
        "Manager().dict(), total ops/s, fork context")
def manager_concurrent(iterations):
    d = _shared_dict()
    clients = 4
    ready, done, go = FORK.SimpleQueue(), FORK.SimpleQueue(), FORK.Event()
    children = []
    for c in range(clients):
        share = iterations // clients + (iterations % clients if c == 0 else 0)
        child = FORK.Process(target=_dict_ops_behind_a_start_line, args=(d, share, ready, go, done))
        child.start()
        children.append(child)
    for _ in range(clients):
        ready.get()
    start = time.perf_counter()
    go.set()
    for _ in range(clients):
        done.get()
    took = time.perf_counter() - start
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"a client's exit code is {child.exitcode}")
    return took


@figure("manager.start", "ms/start", "Manager() + the first dict(), fork context (shutdown outside the time)")
def manager_start(iterations):
    total = 0.0
    for _ in range(iterations):
        start = time.perf_counter()
        manager = FORK.Manager()
        manager.dict()
        total += time.perf_counter() - start
        manager.shutdown()
    return total


def to_unit(unit, seconds_per_iteration, bytes_per_iteration=None, convert=None):
    if convert:
        return convert(seconds_per_iteration)
    if unit.startswith("us/"):
        return seconds_per_iteration * 1e6
    if unit.startswith("ns/"):
        return seconds_per_iteration * 1e9
    if unit.startswith("ms/"):
        return seconds_per_iteration * 1e3
    if unit == "MB/s":
        return bytes_per_iteration / seconds_per_iteration / 1e6
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
    with CpuLoad() if fig["loaded"] else contextlib.nullcontext():
        return measure_rounds(fig, rounds, min_time, fixed_iterations)


def measure_rounds(fig, rounds, min_time, fixed_iterations):
    fixed_iterations = fixed_iterations or fig["fixed_iterations"]
    if fixed_iterations:
        iterations = fixed_iterations
        fig["batch"](iterations)  # warm-up
    else:
        iterations = calibrate(fig["batch"], min_time)
    values = []
    for _ in range(rounds):
        value = to_unit(fig["unit"], fig["batch"](iterations) / iterations, fig["bytes_per_iteration"],
                        fig["convert"])
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


# As in mproc_bench: rounds more than this factor apart are bimodal.
MAX_SPREAD = 5.0


def spread_checked(fig, args):
    """Whether the rounds can tell bimodal behaviour from noise (mproc_bench's rule): 3 rounds or
    more, and batches of 50 ms or more, calibrated or the figure's own size; a few milliseconds'
    batch can be slowed several times by one time slice of another process."""
    if args.no_spread_check or args.rounds < 3 or args.iterations:
        return False
    return bool(fig["fixed_iterations"]) or args.min_time >= 0.05


def is_bimodal(fig, row):
    low, high = max(row["min"], fig["spread_floor"]), max(row["max"], fig["spread_floor"])
    return high / low > MAX_SPREAD if low > 0 else high > 0


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
    parser.add_argument("--iterations", type=positive(int),
                        help="fixed iterations per batch (no calibration, and no spread check)")
    parser.add_argument("--no-spread-check", action="store_true",
                        help="report figures whose rounds differ by more than 5x as any other, with exit status 0")
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
    bimodal = []
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
        if spread_checked(fig, args) and is_bimodal(fig, row):
            bimodal.append(row)
    for row in bimodal:
        print(f"python_mp_bench: bimodal: {row['name']} python: rounds from {row['min']:.4g} to {row['max']:.4g} "
              f"{row['unit']} (median {row['value']:.4g}), more than {MAX_SPREAD:g}x apart", file=sys.stderr)
    if bimodal:
        print(f"python_mp_bench: {len(bimodal)} bimodal figure(s); --no-spread-check reports them without failing",
              file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
