#!/usr/bin/env python3
"""Golden-output tests for the C++ ports of the PyMOTW-3 multiprocessing chapter.

    golden.py [--cwd DIR] [--timeout SECONDS] NAME BINARY   run BINARY, check it against NAME's rules
    golden.py --self-test                                   check that the rules reject broken output

The rules are those of spec/pymotw.md: §2.10 for how a port is run and what is always checked,
§3 for each example's expected output and the nondeterminism its test normalises (nothing else is
normalised). Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import string
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------
# Running a port
# --------------------------------------------------------------------------------------------

@dataclass
class Run:
    """What one run of a binary produced. `err` is None when stderr went into stdout's pipe."""
    rc: Optional[int]  # exit status; -N when killed by signal N; None when it timed out
    out: str
    err: Optional[str]
    pid: int  # the binary's own pid (the parent of the processes it starts)
    timed_out: bool = False


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def run_binary(binary: str, cwd: str, timeout: float, merged: bool = False) -> Run:
    """Runs `binary` as §2.10 says: fixed working directory, stdin from /dev/null, stdout and
    stderr on their own pipes (or one pipe when `merged`), never a terminal. The binary leads a
    process group of its own so that whatever it leaves behind can be found and killed."""
    proc = subprocess.Popen(
        [binary],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = b"", b""
    return Run(
        rc=None if timed_out else proc.returncode,
        out=_decode(out or b""),
        err=None if merged else _decode(err or b""),
        pid=proc.pid,
        timed_out=timed_out,
    )


def _proc_stat(pid: int) -> Optional[tuple[str, int]]:
    """(state, process group) of `pid` from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[2])


def process_gone(pid: int, pgrp: int) -> bool:
    """True when `pid` no longer exists. A zombie (or dead) entry counts as gone, and so does a
    process outside the run's process group (the pid was reused by something else)."""
    st = _proc_stat(pid)
    return st is None or st[0] in ("Z", "X", "x") or st[1] != pgrp


def survivors(pgrp: int) -> list[int]:
    """Live (non-zombie) processes still in process group `pgrp`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not process_gone(int(entry), pgrp):
            found.append(int(entry))
    return sorted(found)


def _kill_group(pgrp: int) -> None:
    try:
        os.killpg(pgrp, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------
# Comparing output
# --------------------------------------------------------------------------------------------

def split_lines(text: str) -> list[str]:
    """The lines of `text`; a last line without its newline is kept (the newline rule reports it)."""
    if text == "":
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def show_diff(expected: list[str], actual: list[str], what: str) -> str:
    diff = difflib.unified_diff(expected, actual, f"expected {what}", f"actual {what}", lineterm="", n=max(len(expected), len(actual)))
    return "\n".join(diff)


def exact(expected: list[str]):
    """EXACT: the lines equal `expected`, in that order, byte for byte."""
    def check(lines: list[str], ctx: dict) -> list[str]:
        if lines == expected:
            return []
        return [f"{ctx['what']} differs from the expected lines (EXACT):\n" + show_diff(expected, lines, ctx["what"])]
    return check


def any_order(expected: list[str]):
    """ANY ORDER: the same multiset of lines as `expected`."""
    def check(lines: list[str], ctx: dict) -> list[str]:
        if sorted(lines) == sorted(expected):
            return []
        return [f"{ctx['what']} is not the expected lines in any order (diff of the sorted lines):\n"
                + show_diff(sorted(expected), sorted(lines), ctx["what"] + ", sorted")
                + "\nactual order:\n" + "\n".join("  " + ln for ln in lines)]
    return check


def one_of(*sequences: list[str]):
    """The lines are exactly one of the allowed sequences."""
    def check(lines: list[str], ctx: dict) -> list[str]:
        if any(lines == seq for seq in sequences):
            return []
        parts = [f"{ctx['what']} is none of the {len(sequences)} allowed sequences:"]
        for i, seq in enumerate(sequences, 1):
            parts.append(f"-- against allowed sequence {i}:\n" + show_diff(seq, lines, ctx["what"]))
        return ["\n".join(parts)]
    return check


def groups(*parts: list[str]):
    """Consecutive groups of lines, for examples whose processes race within known windows: the
    lines of each group take the next len(group) positions, in any order among themselves. A group
    of one line is EXACT at its position."""
    expected_flat = [ln for group in parts for ln in group]

    def check(lines: list[str], ctx: dict) -> list[str]:
        errors = []
        if len(lines) != len(expected_flat):
            errors.append(f"{len(lines)} lines, expected {len(expected_flat)}")
        position = 0
        for group in parts:
            got = lines[position:position + len(group)]
            if sorted(got) != sorted(group):
                span = f"line {position + 1}" if len(group) == 1 else f"lines {position + 1}-{position + len(group)}"
                rule = "" if len(group) == 1 else " (in any order)"
                errors.append(f"{span} should be {group}{rule}, got {got}")
            position += len(group)
        if not errors:
            return []
        return [f"{ctx['what']} does not match the expected groups of lines:\n" + "\n".join(errors) + "\n"
                + show_diff(expected_flat, lines, ctx["what"])]
    return check


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*)>")


def _template_regex(template: str) -> tuple[re.Pattern, list[str]]:
    names = _PLACEHOLDER.findall(template)
    pieces = _PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
    pattern = "".join(re.escape(p) if i % 2 == 0 else r"(\d+)" for i, p in enumerate(pieces))
    return re.compile(pattern + r"\Z"), names


def template(expected: list, prebound: Optional[Callable[[dict], dict]] = None):
    """EXACT with <NAME> placeholders standing for decimal integers (pids). Each expected item is a
    template line or a tuple of alternative template lines (the first is the normal one). A name
    binds to one value on every line it appears on, and different names bind to different values.
    `prebound(ctx)` gives values known beforehand (SELF: the binary's own pid)."""
    def check(lines: list[str], ctx: dict) -> list[str]:
        bound: dict[str, int] = dict(prebound(ctx)) if prebound else {}
        errors = []
        shown_expected = []
        if len(lines) != len(expected):
            errors.append(f"{ctx['what']} has {len(lines)} lines, expected {len(expected)}")
        for i, alternatives in enumerate(expected):
            if isinstance(alternatives, str):
                alternatives = (alternatives,)
            shown_expected.append(alternatives[0])
            if i >= len(lines):
                continue
            why = None
            for alt in alternatives:
                regex, names = _template_regex(alt)
                m = regex.match(lines[i])
                if not m:
                    why = why or "does not match"
                    continue
                trial = dict(bound)
                ok = True
                for name, value in zip(names, map(int, m.groups())):
                    if trial.setdefault(name, value) != value:
                        why, ok = f"<{name}> is {value} here but {trial[name]} before", False
                        break
                clash = sorted(k for k, v in trial.items() if list(trial.values()).count(v) > 1)
                if ok and clash:
                    why, ok = f"<{'>, <'.join(clash)}> have the same value {trial[clash[0]]}", False
                if ok:
                    bound = trial
                    shown_expected[-1] = alt
                    why = None
                    break
            if why:
                allowed = " | ".join(alternatives)
                errors.append(f"line {i + 1} {why}: {lines[i]!r}\n    allowed: {allowed}")
        ctx.setdefault("bindings", {}).update(bound)
        if not errors:
            return []
        normalised = []
        for ln in lines:
            for name, value in bound.items():
                ln = re.sub(rf"(?<!\d){value}(?!\d)", f"<{name}>", ln)
            normalised.append(ln)
        return [f"{ctx['what']} does not match the expected lines (numbers of bound placeholders "
                f"shown as <NAME>; bound: {bound}):\n" + "\n".join(errors) + "\n"
                + show_diff(shown_expected, normalised, ctx["what"])]
    return check


def empty(lines: list[str], ctx: dict) -> list[str]:
    if not lines:
        return []
    return [f"{ctx['what']} should be empty but has {len(lines)} lines:\n" + "\n".join("  " + ln for ln in lines)]


# --------------------------------------------------------------------------------------------
# The examples (spec/pymotw.md §3)
# --------------------------------------------------------------------------------------------

@dataclass
class Example:
    stdout: Callable
    stderr: Callable = empty
    # The merged stream (stdout and stderr on one pipe), checked in a second run when the merged
    # order is deterministic (examples 10, 11).
    merged: Optional[Callable] = None
    # Checks after the binary ended: (run, ctx) -> errors; ctx holds the bindings of templates.
    after: list = field(default_factory=list)
    # The working directory the example needs (example 25 reads its input files there), in place
    # of the harness's.
    cwd: Optional[str] = None


def _self_pid(ctx: dict) -> dict:
    return {"SELF": ctx["pid"]}


def daemon_gone(run: Run, ctx: dict) -> list[str]:
    """Example 5: the daemon was terminated at exit, not left running as an orphan."""
    pid = ctx.get("bindings", {}).get("PID1")
    if pid is None:
        return []  # the stdout rule already failed
    if process_gone(pid, run.pid):
        return []
    return [f"the daemon child (pid {pid}) still exists after the program ended: it was not terminated"]


NAMES_ORDER_A = [
    "worker 1 Starting", "worker 1 Exiting",
    "Process-3 Starting", "Process-3 Exiting",
    "my_service Starting", "my_service Exiting",
]
NAMES_ORDER_B = NAMES_ORDER_A[2:4] + NAMES_ORDER_A[0:2] + NAMES_ORDER_A[4:]

EXITCODE_STDOUT = [
    "Starting process for exit_error",
    "Starting process for exit_ok",
    "Starting process for return_value",
    "Starting process for raises",
    "Starting process for terminated",
    "     exit_error.exitcode = 1",
    "        exit_ok.exitcode = 0",
    "   return_value.exitcode = 0",
    "         raises.exitcode = 1",
    "     terminated.exitcode = -15",
]


def exitcode_stderr(lines: list[str], ctx: dict) -> list[str]:
    """Example 9: the report of the `raises` child alone: first `Process raises:`, last a line ending
    with the exception's message; the lines between are implementation defined."""
    errors = []
    if not lines or lines[0] != "Process raises:":
        errors.append("stderr does not start with the line 'Process raises:'")
    if lines.count("Process raises:") > 1:
        errors.append("'Process raises:' appears more than once")
    if len(lines) < 2 or not lines[-1].endswith("There was an error!"):
        errors.append("the report does not end with a line ending in 'There was an error!'")
    others = [ln for ln in lines if re.match(r"Process (exit_error|exit_ok|return_value|terminated)\b", ln)]
    if others:
        errors.append(f"stderr has output from other children: {others}")
    if errors:
        return ["\n".join(errors) + "\nactual stderr:\n" + "\n".join("  " + ln for ln in lines)]
    return []


LOG_TO_STDERR_MERGED = [
    "[INFO/Process-1] child process calling self.run()",
    "Doing some work",
    "[INFO/Process-1] process shutting down",
    '[DEBUG/Process-1] running all "atexit" finalizers with priority >= 0',
    '[DEBUG/Process-1] running the remaining "atexit" finalizers',
    "[INFO/Process-1] process exiting with exitcode 0",
    "[INFO/MainProcess] process shutting down",
    '[DEBUG/MainProcess] running all "atexit" finalizers with priority >= 0',
    '[DEBUG/MainProcess] running the remaining "atexit" finalizers',
]

GET_LOGGER_MERGED = [
    "[INFO/Process-1] child process calling self.run()",
    "Doing some work",
    "[INFO/Process-1] process shutting down",
    "[INFO/Process-1] process exiting with exitcode 0",
    "[INFO/MainProcess] process shutting down",
]


def _only_logs(block: list[str]) -> list[str]:
    return [ln for ln in block if ln.startswith("[")]


EVENT_STARTING = [
    "main: waiting before calling Event.set()",
    "wait_for_event: starting",
    "wait_for_event_timeout: starting",
]
EVENT_TIMED_OUT = ["wait_for_event_timeout: e.is_set()-> False"]
EVENT_SET = ["main: event is set", "wait_for_event: e.is_set()-> True"]

LOCK_LINES = ["Lock acquired via with", "Lock acquired directly"]

CONDITION_SEQUENCE = [
    "Starting stage_2[1]",
    "Starting stage_2[2]",
    "Starting s1",
    "s1 done and ready for stage 2",
]
CONDITION_RUNNING = ["stage_2[1] running", "stage_2[2] running"]

# Pools (examples 22, 23, 25): worker names depend on the start method the test runs under, and
# pool sizes on cpu_count.
POOL_WORKER_PREFIX = {"fork": "ForkPoolWorker", "spawn": "SpawnPoolWorker", "forkserver": "ForkServerPoolWorker"}


def start_method(ctx: dict) -> str:
    """The start method of the run: the self-test's choice, else MPROC_START_METHOD, else fork."""
    return ctx.get("start_method") or os.environ.get("MPROC_START_METHOD") or "fork"


def cpu_count(ctx: dict) -> int:
    """cpu_count() as mproc computes it: MPROC_CPU_COUNT, else the online CPUs (§2.8: not nproc,
    which honours the affinity mask)."""
    if "cpu_count" in ctx:
        return ctx["cpu_count"]
    forced = os.environ.get("MPROC_CPU_COUNT")
    return int(forced) if forced else os.sysconf("SC_NPROCESSORS_ONLN")


POOL_INPUT = "Input   : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
POOL_BUILTIN = re.compile(r"Built-in: <map object at 0x[0-9a-f]+>\Z")
POOL_OUTPUT = "Pool    : [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]"


def pool_starting(replacements: int):
    """Examples 22 and 23: `Input` EXACT; `Built-in` with <HEX>; K lines `Starting <prefix>-1` …
    `Starting <prefix>-K` in any order, each once, P ≤ K ≤ P + replacements; `Pool` EXACT."""
    def check(lines: list[str], ctx: dict) -> list[str]:
        p, prefix = 2 * cpu_count(ctx), POOL_WORKER_PREFIX.get(start_method(ctx), "?")
        if len(lines) < 3:
            return [f"{ctx['what']} has {len(lines)} lines, expected at least 3:\n" + "\n".join("  " + ln for ln in lines)]
        errors = []
        first, builtin, *starting, last = lines
        if first != POOL_INPUT:
            errors.append(f"line 1 should be {POOL_INPUT!r}, got {first!r}")
        if not POOL_BUILTIN.match(builtin):
            errors.append(f"line 2 should match 'Built-in: <map object at <HEX>>', got {builtin!r}")
        if last != POOL_OUTPUT:
            errors.append(f"the last line should be {POOL_OUTPUT!r}, got {last!r}")
        k = len(starting)
        if not p <= k <= p + replacements:
            allowed = f"{p}" if replacements == 0 else f"{p} to {p + replacements}"
            errors.append(f"{k} worker lines between line 2 and the last, expected {allowed} (P = {p})")
        expected = [f"Starting {prefix}-{i}" for i in range(1, k + 1)]
        if sorted(starting) != sorted(expected):
            errors.append(f"the worker lines are not 'Starting {prefix}-1' … 'Starting {prefix}-{k}' in any order "
                          f"(start method {start_method(ctx)}):\n" + show_diff(sorted(expected), sorted(starting), "worker lines, sorted"))
        if errors:
            return [f"{ctx['what']} does not match the pool rule:\n" + "\n".join(errors)]
        return []
    return check


# Example 25: the reference counts come from the fixture files themselves, computed here with the
# rules of spec/pymotw.md §5 (Python's own string functions, nothing of mproc or the port).
WORDCOUNT_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wordcount_fixtures")
WORDCOUNT_STOP_WORDS = frozenset("a an and are as be by for if in is it of or py rst that the to with".split())
_PUNCTUATION_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def reference_words(path: str) -> list[str]:
    """The counted words of one file, in reading order."""
    words = []
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.lstrip().startswith(".."):
                continue
            for token in line.translate(_PUNCTUATION_TO_SPACE).split():
                token = token.lower()
                if token.isalpha() and token not in WORDCOUNT_STOP_WORDS:
                    words.append(token)
    return words


def producer_consumer_lines(lines: list[str], ctx: dict) -> list[str]:
    """Example 14: `Creating <P> consumers` (P = 2 x cpu_count), then the 10 + P consumer lines
    in any order (each task once, each consumer's Exiting once and after its own tasks), then the
    10 results in any order."""
    p = 2 * cpu_count(ctx)
    errors = []
    if not lines or lines[0] != f"Creating {p} consumers":
        errors.append(f"stdout line 1 is {lines[0] if lines else None!r}, expected 'Creating {p} consumers'")
    body, results = lines[1:1 + 10 + p], lines[1 + 10 + p:]
    pattern = re.compile(r"Consumer-(\d+): (?:(\d+) \* (\d+)|(Exiting))\Z")
    tasks_seen: dict[int, int] = {}
    exited: dict[int, int] = {}
    for index, ln in enumerate(body):
        m = pattern.match(ln)
        if not m:
            errors.append(f"stdout line {index + 2} is not a consumer line: {ln!r}")
            continue
        k = int(m.group(1))
        if not 1 <= k <= p:
            errors.append(f"stdout line {index + 2}: consumer {k} is not in 1..{p}")
        if m.group(4):
            if k in exited:
                errors.append(f"Consumer-{k} exited twice")
            exited[k] = index
        else:
            a, b = int(m.group(2)), int(m.group(3))
            if a != b or not 0 <= a <= 9:
                errors.append(f"stdout line {index + 2}: no such task {a} * {b}")
            if k in exited:
                errors.append(f"stdout line {index + 2}: Consumer-{k} ran a task after its Exiting line")
            tasks_seen[a] = tasks_seen.get(a, 0) + 1
    for i in range(10):
        if tasks_seen.get(i, 0) != 1:
            errors.append(f"task {i} * {i} was run {tasks_seen.get(i, 0)} times, expected once")
    missing = sorted(set(range(1, p + 1)) - set(exited))
    if missing:
        errors.append(f"consumers without an Exiting line: {missing}")
    expected_results = [f"Result: {i} * {i} = {i * i}" for i in range(10)]
    if sorted(results) != sorted(expected_results):
        errors.append("the last 10 lines are not the 10 results in any order:\n"
                      + show_diff(sorted(expected_results), sorted(results), "results, sorted"))
    return errors


def wordcount_files(directory: str) -> list[str]:
    """The port's inputs when run without arguments: the directory's *.rst files, by name."""
    return sorted(n for n in os.listdir(directory)
                  if n.endswith(".rst") and not n.startswith(".") and os.path.isfile(os.path.join(directory, n)))


def wordcount_reference(directory: str) -> list[tuple[str, int]]:
    """Every word with its count, in the port's order: counts descending; among equal counts the
    word whose first appearance came later first (a stable sort by count, then reversed)."""
    counts: dict[str, int] = {}  # insertion order = order of first appearance
    for name in wordcount_files(directory):
        for word in reference_words(os.path.join(directory, name)):
            counts[word] = counts.get(word, 0) + 1
    table = sorted(counts.items(), key=lambda item: item[1])
    table.reverse()
    return table


def wordcount_expected_table(directory: str) -> list[str]:
    top20 = wordcount_reference(directory)[:20]
    width = max((len(word) for word, _ in top20), default=0) + 1
    return ["", "TOP 20 WORDS BY FREQUENCY", ""] + [f"{word:<{width}}: {count:5}" for word, count in top20]


def wordcount_lines(lines: list[str], ctx: dict) -> list[str]:
    """Example 25: one `<prefix>-<k> reading <file>` line per input file in any order (1 ≤ k ≤
    cpu_count), then the header and the top-20 table EXACT against the reference."""
    directory = ctx.get("cwd") or WORDCOUNT_FIXTURES
    files = wordcount_files(directory)
    prefix, cpus = POOL_WORKER_PREFIX.get(start_method(ctx), "?"), cpu_count(ctx)
    errors = []
    reading, table = lines[:len(files)], lines[len(files):]
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+) reading (.+)\Z")
    read = []
    for ln in reading:
        m = pattern.match(ln)
        if not m:
            errors.append(f"{ln!r} is not a line '{prefix}-<k> reading <file>' (start method {start_method(ctx)})")
        elif not 1 <= int(m.group(1)) <= cpus:
            errors.append(f"{ln!r}: worker number {m.group(1)} is outside 1..{cpus} (cpu_count)")
        else:
            read.append(m.group(2))
    if not errors and sorted(read) != files:
        errors.append(f"the files read are {sorted(read)}, expected each of {files} once")
    expected = wordcount_expected_table(directory)
    if table != expected:
        errors.append(f"after the {len(files)} 'reading' lines, the table differs from the reference counts (EXACT):\n"
                      + show_diff(expected, table, ctx["what"] + " after the reading lines"))
    if errors:
        return [f"{ctx['what']} does not match the word-count rule:\n" + "\n".join(errors)]
    return []


SEMAPHORE_LIST = r"\[(?:'\d'(?:, '\d')*)?\]"
SEMAPHORE_ACTIVATING = re.compile(rf"Activating (\d) now running ({SEMAPHORE_LIST})\Z")
SEMAPHORE_RUNNING = re.compile(rf"Now running ({SEMAPHORE_LIST})\Z")


def semaphore_invariants(lines: list[str], ctx: dict) -> list[str]:
    """Example 18: the sequence is random; only its invariants are checked."""
    errors = []
    activated: dict[str, int] = {}
    running_lines = 0
    for ln in lines:
        m = SEMAPHORE_ACTIVATING.match(ln)
        listed = None
        if m:
            activated[m.group(1)] = activated.get(m.group(1), 0) + 1
            listed = re.findall(r"'(\d)'", m.group(2))
            if m.group(1) not in listed:
                errors.append(f"{ln!r}: the activated worker is not in the list")
        else:
            m = SEMAPHORE_RUNNING.match(ln)
            if not m:
                errors.append(f"{ln!r} is neither 'Activating <d> now running <list>' nor 'Now running <list>'")
                continue
            running_lines += 1
            listed = re.findall(r"'(\d)'", m.group(1))
        if len(set(listed)) != len(listed):
            errors.append(f"{ln!r}: a worker is listed twice")
        if len(listed) > 3:
            errors.append(f"{ln!r}: more than 3 workers at once (the semaphore's limit)")
    for d in "0123456789":
        if activated.get(d, 0) != 1:
            errors.append(f"worker {d} has {activated.get(d, 0)} 'Activating' lines, expected 1")
    if running_lines == 0:
        errors.append("no 'Now running' line")
    if errors:
        return [f"{ctx['what']} breaks the semaphore example's invariants:\n" + "\n".join(errors)]
    return []


def manager_dict_pairs(lines: list[str], ctx: dict) -> list[str]:
    """Example 19: one line, the ten pairs i: 2i in any order."""
    m = re.fullmatch(r"Results: \{(.*)\}", lines[0]) if len(lines) == 1 else None
    if not m:
        return [f"{ctx['what']} should be one line 'Results: {{<pairs>}}', got {lines!r}"]
    pairs = m.group(1).split(", ")
    expected = [f"{i}: {2 * i}" for i in range(10)]
    if sorted(pairs) != sorted(expected):
        return [f"{ctx['what']}: the pairs {pairs} are not exactly {expected} in some order"]
    return []


NAMESPACES_LINES = ["Before event, error: 'Namespace' object has no attribute 'value'", "After event: This is the value"]
# The consumer is started first but may read after the producer wrote (spec: a known race).
NAMESPACES_RACE = ["Before event: This is the value", "After event: This is the value"]
NAMESPACES_MUTABLE_LINES = ["Before event: []", "After event : []"]
SEMAPHORE_GOOD = (["Activating 0 now running ['0']", "Activating 1 now running ['0', '1']",
                   "Activating 2 now running ['0', '1', '2']", "Now running ['0', '1', '2']"]
                  + [f"Activating {i} now running ['{i - 2}', '{i - 1}', '{i}']" for i in range(3, 9)]
                  + ["Now running ['7', '8']", "Activating 9 now running ['8', '9']"])


EXAMPLES: dict[str, Example] = {
    # 1. Five children print `Worker`; identical lines, so EXACT.
    "multiprocessing_simple": Example(stdout=exact(["Worker"] * 5)),
    # 2. One line per argument, in any order.
    "multiprocessing_simpleargs": Example(stdout=any_order([f"Worker: {i}" for i in range(5)])),
    # 3. As example 1 with the target from another translation unit.
    "multiprocessing_import_main": Example(stdout=exact(["Worker"] * 5)),
    # 4. The two 2 s workers race; my_service (3 s) is last; each child's pair stays together.
    "multiprocessing_names": Example(stdout=one_of(NAMES_ORDER_A, NAMES_ORDER_B)),
    # 5. EXACT modulo pids; the daemon never prints `Exiting` and is gone after the program ends.
    "multiprocessing_daemon": Example(
        stdout=template([
            "Starting: daemon <PID1>",
            "Starting: non-daemon <PID2>",
            "Exiting : non-daemon <PID2>",
        ], prebound=_self_pid),
        after=[daemon_gone],
    ),
    # 6. Each child's lines come out when it exits: the non-daemon at ~1 s, the daemon at ~2 s.
    "multiprocessing_daemon_join": Example(stdout=exact([
        "Starting: non-daemon",
        "Exiting : non-daemon",
        "Starting: daemon",
        "Exiting : daemon",
    ])),
    # 7. The daemon is still running after join(1 s) and is terminated at exit, losing its output.
    "multiprocessing_daemon_join_timeout": Example(stdout=exact([
        "Starting: non-daemon",
        "Exiting : non-daemon",
        "d.is_alive() True",
    ])),
    # 8. Python 3.11 repr; <PPID> is the port's own pid, <PID> the child's. Only the TERMINATED
    #    line may show the child already stopped (the kill won the race with the poll).
    "multiprocessing_terminate": Example(stdout=template([
        "BEFORE: <Process name='Process-1' parent=<PPID> initial> False",
        "DURING: <Process name='Process-1' pid=<PID> parent=<PPID> started> True",
        ("TERMINATED: <Process name='Process-1' pid=<PID> parent=<PPID> started> True",
         "TERMINATED: <Process name='Process-1' pid=<PID> parent=<PPID> stopped exitcode=-SIGTERM> False",
         "TERMINATED: <Process name='Process-1' pid=<PID> parent=<PPID> stopped exitcode=-SIGTERM> True"),
        "JOINED: <Process name='Process-1' pid=<PID> parent=<PPID> stopped exitcode=-SIGTERM> False",
    ], prebound=lambda ctx: {"PPID": ctx["pid"]})),
    # 9. Exit codes EXACT on stdout; the `raises` child reports its exception on stderr.
    "multiprocessing_exitcode": Example(stdout=exact(EXITCODE_STDOUT), stderr=exitcode_stderr),
    # 10. Library log lines at DEBUG: stderr EXACT, and the merged order is deterministic.
    "multiprocessing_log_to_stderr": Example(
        stdout=exact(["Doing some work"]),
        stderr=exact(_only_logs(LOG_TO_STDERR_MERGED)),
        merged=exact(LOG_TO_STDERR_MERGED),
    ),
    # 11. Level INFO set through get_logger(): no DEBUG lines.
    "multiprocessing_get_logger": Example(
        stdout=exact(["Doing some work"]),
        stderr=exact(_only_logs(GET_LOGGER_MERGED)),
        merged=exact(GET_LOGGER_MERGED),
    ),
    # 12. Default names from the subclass's name, in any order.
    "multiprocessing_subclass": Example(stdout=any_order([f"In Worker-{i}" for i in range(1, 6)])),
    # 13. One object through a Queue, used in the child (which reports its own name).
    "multiprocessing_queue": Example(stdout=exact(["Doing something fancy in Process-1 for Fancy Dan!"])),
    # 14. Consumers race for tasks; see producer_consumer_lines.
    "multiprocessing_producer_consumer": Example(stdout=producer_consumer_lines),
    # 15. The three "starting" lines race; the timed-out waiter reports alone at ~2 s; the set
    #     and the woken waiter race at ~3 s.
    "multiprocessing_event": Example(stdout=groups(EVENT_STARTING, EVENT_TIMED_OUT, EVENT_SET)),
    # 16. The two children race for the lock; each line exactly once.
    "multiprocessing_lock": Example(stdout=any_order(LOCK_LINES)),
    # 17. The 1 s sleeps order the first four lines; the two woken stage-2 processes race.
    "multiprocessing_condition": Example(stdout=groups(*[[ln] for ln in CONDITION_SEQUENCE], CONDITION_RUNNING)),
    # 18. Random sleeps: invariants only (each worker activated once, at most 3 at a time).
    "multiprocessing_semaphore": Example(stdout=semaphore_invariants),
    # 19. The children's assignments reach the manager in any order.
    "multiprocessing_manager_dict": Example(stdout=manager_dict_pairs),
    # 20. EXACT, or the rare variant where the producer wrote first.
    "multiprocessing_namespaces": Example(stdout=one_of(NAMESPACES_LINES, NAMESPACES_RACE)),
    # 21. The change to the copy is not seen.
    "multiprocessing_namespaces_mutable": Example(stdout=exact(NAMESPACES_MUTABLE_LINES)),
    # 22. Each worker's `Starting` line comes out when it exits, during join(): between the
    #     Built-in and Pool lines, P of them, any order.
    "multiprocessing_pool": Example(stdout=pool_starting(replacements=0)),
    # 23. As 22; each of the 10 one-item tasks may retire a worker after its second, so up to 5
    #     replacement workers print their own line.
    "multiprocessing_pool_maxtasksperchild": Example(stdout=pool_starting(replacements=5)),
    # 25. Run in the fixture directory: which worker reads which file varies, the table does not.
    "multiprocessing_wordcount": Example(stdout=wordcount_lines, cwd=WORDCOUNT_FIXTURES),
}


# --------------------------------------------------------------------------------------------
# Checking a run
# --------------------------------------------------------------------------------------------

def stream_rules(text: str, what: str) -> list[str]:
    """§2.10, always: a whole last line, and no carriage return."""
    errors = []
    if text and not text.endswith("\n"):
        errors.append(f"{what} does not end with a newline (last line: {split_lines(text)[-1]!r})")
    if "\r" in text:
        errors.append(f"{what} contains a carriage return (\\r)")
    return errors


def check_run(example: Example, run: Run, ctx: dict) -> list[str]:
    """Every rule for one run of the binary; returns the failures, each readable on its own."""
    errors = []
    if run.timed_out:
        errors.append(f"timed out after {ctx.get('timeout', TIMEOUT_S)} s and was killed")
    elif run.rc != 0:
        how = f"killed by signal {-run.rc}" if run.rc < 0 else f"exit status {run.rc}"
        errors.append(f"the program ended with {how}, expected exit status 0")
    if run.err is None:
        ctx["what"] = "merged stdout+stderr"
        errors += stream_rules(run.out, ctx["what"])
        errors += example.merged(split_lines(run.out), ctx)
        return errors
    errors += stream_rules(run.out, "stdout")
    errors += stream_rules(run.err, "stderr")
    ctx["what"] = "stdout"
    errors += example.stdout(split_lines(run.out), ctx)
    ctx["what"] = "stderr"
    errors += example.stderr(split_lines(run.err), ctx)
    return errors


def _show_run(run: Run) -> str:
    def block(title: str, text: Optional[str]) -> str:
        if text is None:
            return ""
        body = "\n".join("  | " + ln for ln in split_lines(text)) if text else "  (empty)"
        return f"{title}:\n{body}\n"
    status = "timed out" if run.timed_out else f"exit status {run.rc}"
    if run.err is None:
        return f"pid {run.pid}, {status}\n" + block("merged stdout+stderr", run.out)
    return f"pid {run.pid}, {status}\n" + block("stdout", run.out) + block("stderr", run.err)


def test_binary(name: str, binary: str, cwd: str, timeout: float) -> int:
    example = EXAMPLES[name]
    cwd = example.cwd or cwd
    failures = []
    runs = [False] + ([True] if example.merged else [])
    for merged in runs:
        label = "run with stdout and stderr merged on one pipe" if merged else "run with separate stdout and stderr pipes"
        run = run_binary(binary, cwd, timeout, merged=merged)
        ctx = {"pid": run.pid, "timeout": timeout, "cwd": cwd}
        errors = check_run(example, run, ctx)
        if not merged:
            for after in example.after:
                errors += after(run, ctx)
        left = survivors(run.pid)
        if left:
            errors.append(f"processes started by the program outlived it (pids {left}); "
                          "every child must be joined or terminated at exit")
            _kill_group(run.pid)
        if errors:
            failures.append(f"=== {label}: FAILED\n" + _show_run(run) + "\n".join("* " + e for e in errors))
        else:
            print(f"=== {label}: ok\n" + _show_run(run))
    if failures:
        print("\n\n".join(failures))
        print(f"golden.{name}: FAILED")
        return 1
    print(f"golden.{name}: passed")
    return 0


# --------------------------------------------------------------------------------------------
# Self-test: the rules must accept the expected output and reject broken variants of it
# --------------------------------------------------------------------------------------------

def _pool_good_lines(replacements: int, method: Optional[str] = None) -> list[str]:
    """A correct run of example 22 (replacements = 0) or 23, workers listed out of order."""
    ctx = {"start_method": method} if method else {}
    prefix, k = POOL_WORKER_PREFIX[start_method(ctx)], 2 * cpu_count(ctx) + replacements
    order = [2, 1] + list(range(k, 2, -1)) if k >= 2 else [1]
    return ([POOL_INPUT, "Built-in: <map object at 0x7f3a5c2e9fd0>"]
            + [f"Starting {prefix}-{i}" for i in order] + [POOL_OUTPUT])


def _wordcount_good_lines(method: Optional[str] = None) -> list[str]:
    """A correct run of example 25: the files read in reverse order, by workers 1, 2, …"""
    ctx = {"start_method": method} if method else {}
    prefix, cpus = POOL_WORKER_PREFIX[start_method(ctx)], cpu_count(ctx)
    files = wordcount_files(WORDCOUNT_FIXTURES)
    return ([f"{prefix}-{1 + i % cpus} reading {name}" for i, name in enumerate(reversed(files))]
            + wordcount_expected_table(WORDCOUNT_FIXTURES))


def _producer_consumer_good_lines() -> list[str]:
    """A correct run of example 14: tasks spread over the consumers, each consumer's Exiting line
    after its tasks, results in reverse order."""
    p = 2 * cpu_count({})
    tasks = [f"Consumer-{1 + i % p}: {i} * {i}" for i in range(10)]
    exits = [f"Consumer-{k}: Exiting" for k in range(p, 0, -1)]
    return ([f"Creating {p} consumers"] + tasks + exits
            + [f"Result: {i} * {i} = {i * i}" for i in reversed(range(10))])


def _good_runs(name: str, pid: int) -> list[Run]:
    """A correct separate-pipe run (and a merged run when checked) for each example."""
    j = lambda lines: "".join(ln + "\n" for ln in lines)  # noqa: E731
    c1, c2 = pid + 1, pid + 2
    out, err, merged = {
        "multiprocessing_simple": (["Worker"] * 5, [], None),
        "multiprocessing_simpleargs": ([f"Worker: {i}" for i in (0, 2, 3, 1, 4)], [], None),
        "multiprocessing_import_main": (["Worker"] * 5, [], None),
        "multiprocessing_names": (NAMES_ORDER_B, [], None),
        "multiprocessing_daemon": ([f"Starting: daemon {c1}", f"Starting: non-daemon {c2}", f"Exiting : non-daemon {c2}"], [], None),
        "multiprocessing_daemon_join": (["Starting: non-daemon", "Exiting : non-daemon", "Starting: daemon", "Exiting : daemon"], [], None),
        "multiprocessing_daemon_join_timeout": (["Starting: non-daemon", "Exiting : non-daemon", "d.is_alive() True"], [], None),
        "multiprocessing_terminate": ([
            f"BEFORE: <Process name='Process-1' parent={pid} initial> False",
            f"DURING: <Process name='Process-1' pid={c1} parent={pid} started> True",
            f"TERMINATED: <Process name='Process-1' pid={c1} parent={pid} started> True",
            f"JOINED: <Process name='Process-1' pid={c1} parent={pid} stopped exitcode=-SIGTERM> False",
        ], [], None),
        "multiprocessing_exitcode": (EXITCODE_STDOUT, ["Process raises:", "std::runtime_error: There was an error!"], None),
        "multiprocessing_log_to_stderr": (["Doing some work"], _only_logs(LOG_TO_STDERR_MERGED), LOG_TO_STDERR_MERGED),
        "multiprocessing_get_logger": (["Doing some work"], _only_logs(GET_LOGGER_MERGED), GET_LOGGER_MERGED),
        "multiprocessing_subclass": ([f"In Worker-{i}" for i in (2, 1, 3, 5, 4)], [], None),
        "multiprocessing_queue": (["Doing something fancy in Process-1 for Fancy Dan!"], [], None),
        "multiprocessing_producer_consumer": (_producer_consumer_good_lines(), [], None),
        "multiprocessing_event": ([EVENT_STARTING[1], EVENT_STARTING[2], EVENT_STARTING[0]] + EVENT_TIMED_OUT
                                  + [EVENT_SET[1], EVENT_SET[0]], [], None),
        "multiprocessing_lock": ([LOCK_LINES[1], LOCK_LINES[0]], [], None),
        "multiprocessing_condition": (CONDITION_SEQUENCE + [CONDITION_RUNNING[1], CONDITION_RUNNING[0]], [], None),
        "multiprocessing_semaphore": (SEMAPHORE_GOOD, [], None),
        "multiprocessing_manager_dict": (["Results: {0: 0, 2: 4, 1: 2, 3: 6, 4: 8, 5: 10, 6: 12, 7: 14, 9: 18, 8: 16}"], [], None),
        "multiprocessing_namespaces": (NAMESPACES_LINES, [], None),
        "multiprocessing_namespaces_mutable": (NAMESPACES_MUTABLE_LINES, [], None),
        "multiprocessing_pool": (_pool_good_lines(0), [], None),
        "multiprocessing_pool_maxtasksperchild": (_pool_good_lines(3), [], None),
        "multiprocessing_wordcount": (_wordcount_good_lines(), [], None),
    }[name]
    runs = [Run(rc=0, out=j(out), err=j(err), pid=pid)]
    if merged is not None:
        runs.append(Run(rc=0, out=j(merged), err=None, pid=pid))
    return runs


def _mutations(run: Run, name: str) -> list[tuple[str, Run]]:
    """Broken variants of a correct run, each of which must be rejected."""
    def with_(**kw) -> Run:
        d = dict(rc=run.rc, out=run.out, err=run.err, pid=run.pid, timed_out=run.timed_out)
        d.update(kw)
        return Run(**d)
    lines = split_lines(run.out)
    j = lambda ls: "".join(ln + "\n" for ln in ls)  # noqa: E731
    m = [
        ("exit status 1", with_(rc=1)),
        ("killed by SIGSEGV", with_(rc=-11)),
        ("timed out", with_(rc=None, timed_out=True)),
        ("last line lost", with_(out=j(lines[:-1]))),
        ("first line doubled", with_(out=j(lines[:1] + lines))),
        ("no trailing newline", with_(out=run.out[:-1])),
        ("carriage return", with_(out=run.out.replace("\n", "\r\n", 1))),
        ("a character changed", with_(out=run.out.replace("e", "E", 1) if "e" in run.out else "x" + run.out)),
        ("extra line", with_(out=run.out + "Worker\n")),
    ]
    if run.err is not None:
        m.append(("stray stderr line", with_(err=run.err + "warning: something\n")))
        if run.err:
            m.append(("stderr without trailing newline", with_(err=run.err[:-1])))
            m.append(("stderr emptied", with_(err="")))
    if name in ("multiprocessing_daemon_join", "multiprocessing_log_to_stderr", "multiprocessing_get_logger",
                "multiprocessing_exitcode", "multiprocessing_daemon_join_timeout") and len(lines) > 1:
        m.append(("two lines swapped", with_(out=j([lines[1], lines[0]] + lines[2:]))))
    if name == "multiprocessing_names":
        m.append(("my_service first", with_(out=j(lines[4:] + lines[:4]))))
        m.append(("pairs torn apart", with_(out=j([lines[0], lines[2], lines[1], lines[3]] + lines[4:]))))
    if name == "multiprocessing_daemon":
        m.append(("daemon exited", with_(out=run.out + f"Exiting : daemon {run.pid + 1}\n")))
        m.append(("same pid twice", with_(out=run.out.replace(str(run.pid + 2), str(run.pid + 1)))))
        m.append(("pid changes", with_(out=j(lines[:2] + [f"Exiting : non-daemon {run.pid + 7}"]))))
        m.append(("child pid is the parent's", with_(out=run.out.replace(str(run.pid + 1), str(run.pid)))))
    if name == "multiprocessing_terminate":
        m.append(("started but not alive", with_(out=run.out.replace("started> True\nJOINED", "started> False\nJOINED"))))
        m.append(("wrong parent", with_(out=run.out.replace(f"parent={run.pid} initial", f"parent={run.pid + 5} initial"))))
        m.append(("child pid changes", with_(out=run.out.replace(f"pid={run.pid + 1} parent={run.pid} stopped",
                                                                 f"pid={run.pid + 3} parent={run.pid} stopped"))))
        m.append(("worker output leaked", with_(out="Starting worker\n" + run.out)))
        m.append(("old repr format", with_(out=run.out.replace(" exitcode=-SIGTERM", "[SIGTERM]"))))
    if name == "multiprocessing_exitcode" and run.err is not None:
        m.append(("no message", with_(err="Process raises:\nstd::runtime_error\n")))
        m.append(("no header", with_(err="std::runtime_error: There was an error!\n")))
        m.append(("other child reports", with_(err=run.err + "Process exit_error:\nSystemExit: 1\n")))
    if name in ("multiprocessing_log_to_stderr", "multiprocessing_get_logger") and run.err is None:
        m.append(("work printed last", with_(out=j([ln for ln in lines if not ln.startswith("Doing")] + ["Doing some work"]))))
    if name == "multiprocessing_event":
        m.append(("timed-out line before a starting line", with_(out=j(lines[:2] + [lines[3], lines[2]] + lines[4:]))))
        m.append(("event set before the timeout", with_(out=j(lines[:3] + [lines[4], lines[3]] + lines[5:]))))
        m.append(("woken waiter sees False", with_(out=run.out.replace("e.is_set()-> True", "e.is_set()-> False"))))
        m.append(("timed-out waiter sees True", with_(out=run.out.replace("e.is_set()-> False", "e.is_set()-> True"))))
    if name == "multiprocessing_lock":
        m.append(("one worker never got the lock", with_(out=j([lines[0], lines[0]]))))
    if name == "multiprocessing_condition":
        m.append(("s1 started first", with_(out=j([lines[2], lines[0], lines[1]] + lines[3:]))))
        m.append(("stage 2 ran before stage 1 was done", with_(out=j(lines[:3] + [lines[4], lines[3]] + lines[5:]))))
    if name == "multiprocessing_get_logger" and run.err is not None:
        m.append(("debug line present", with_(err=run.err + '[DEBUG/MainProcess] running the remaining "atexit" finalizers\n')))
    if name in ("multiprocessing_pool", "multiprocessing_pool_maxtasksperchild"):
        builtin, starting, last = lines[1], lines[2:-1], lines[-1]
        prefix = starting[0].split()[1].rsplit("-", 1)[0]
        other = next(p for p in POOL_WORKER_PREFIX.values() if p != prefix)
        renumber = lambda f: [f"Starting {prefix}-{f(int(ln.rsplit('-', 1)[1]))}" for ln in starting]  # noqa: E731
        m.append(("a worker line lost", with_(out=j(lines[:2] + starting[1:] + [last]))))
        m.append(("a worker line doubled", with_(out=j(lines[:2] + starting + starting[:1] + [last]))))
        m.append(("workers numbered 1, 3, 5, …", with_(out=j(lines[:2] + renumber(lambda i: 2 * i - 1) + [last]))))
        m.append(("workers numbered from 0", with_(out=j(lines[:2] + renumber(lambda i: i - 1) + [last]))))
        m.append(("another start method's prefix", with_(out=run.out.replace(prefix + "-", other + "-"))))
        m.append(("a worker line after the Pool line", with_(out=j(lines[:2] + starting[1:] + [last, starting[0]]))))
        m.append(("a worker line before the Built-in line", with_(out=j(lines[:1] + starting[:1] + [builtin] + starting[1:] + [last]))))
        m.append(("address not in hex", with_(out=run.out.replace(builtin, "Built-in: <map object at 139878>"))))
        m.append(("address in upper case", with_(out=run.out.replace(builtin, builtin.split("0x")[0] + "0x" + builtin.split("0x")[1].upper()))))
        m.append(("a result changed", with_(out=run.out.replace("16, 18]", "16, 19]"))))
        m.append(("Input line misaligned", with_(out=run.out.replace("Input   :", "Input :"))))
    if name == "multiprocessing_semaphore":
        m.append(("four at once", with_(out=run.out.replace("['8', '9']\n", "['6', '7', '8', '9']\n"))))
        m.append(("a worker activated twice", with_(out=run.out + "Activating 3 now running ['3']\n")))
        m.append(("activated worker not listed", with_(out=run.out.replace("Activating 0 now running ['0']", "Activating 0 now running []"))))
        m.append(("no Now running line", with_(out=j([ln for ln in lines if not ln.startswith("Now")]))))
        m.append(("a worker listed twice", with_(out=run.out.replace("['7', '8']", "['8', '8']"))))
    if name == "multiprocessing_manager_dict":
        m.append(("a value wrong", with_(out=run.out.replace("9: 18", "9: 19"))))
        m.append(("a pair missing", with_(out=run.out.replace(", 8: 16", ""))))
        m.append(("Python's repr lost", with_(out=run.out.replace(": ", "=").replace("Results=", "Results: "))))
    if name == "multiprocessing_namespaces_mutable":
        m.append(("the copy's change was shared", with_(out=j([lines[0], "After event : ['This is the value']"]))))
    if name == "multiprocessing_namespaces":
        m.append(("the attribute never arrived", with_(out=j([lines[0], lines[0].replace("Before event,", "After event,")]))))
    if name == "multiprocessing_pool":
        m.append(("one worker too many", with_(out=j(lines[:-1] + [f"Starting {lines[2].split()[1].rsplit('-', 1)[0]}-{len(lines) - 2}"] + lines[-1:]))))
    if name == "multiprocessing_pool_maxtasksperchild":
        m.append(("six replacements", with_(out=j(_pool_good_lines(6)))))
        m.append(("fewer workers than P", with_(out=j(_pool_good_lines(-1)))))
    if name == "multiprocessing_producer_consumer":
        p = 2 * cpu_count({})
        body = lines[1:1 + 10 + p]
        exit_of_1 = body.index("Consumer-1: Exiting")
        m.append(("a consumer exits before its task", with_(out=j(lines[:1] + [body[exit_of_1]] + body[:exit_of_1]
                                                                   + body[exit_of_1 + 1:] + lines[1 + 10 + p:]))))
        m.append(("a task run twice", with_(out=run.out.replace("Consumer-2: 1 * 1", "Consumer-2: 0 * 0"))))
        m.append(("a result line before a consumer line", with_(out=j(lines[:1] + lines[-1:] + lines[1:-1]))))
        m.append(("consumer count from nproc", with_(out=run.out.replace(f"Creating {p} consumers", f"Creating {p + 2} consumers"))))
        m.append(("consumer 0", with_(out=run.out.replace("Consumer-1: Exiting", "Consumer-0: Exiting"))))
    if name == "multiprocessing_wordcount":
        files = len(wordcount_files(WORDCOUNT_FIXTURES))
        reading, table = lines[:files], lines[files:]
        prefix = reading[0].rsplit("-", 1)[0]
        other = next(p for p in POOL_WORKER_PREFIX.values() if p != prefix)
        rows = table[3:]
        tie = next(i for i in range(len(rows) - 1) if rows[i].split(":")[1] == rows[i + 1].split(":")[1])
        swapped = rows[:tie] + [rows[tie + 1], rows[tie]] + rows[tie + 2:]
        word, count = rows[0].split(":")
        m.append(("a file read twice", with_(out=j(reading[:-1] + reading[:1] + table))))
        m.append(("a file not read", with_(out=j(reading[1:] + table))))
        m.append(("a reading line after the table", with_(out=j(reading[1:] + table + reading[:1]))))
        m.append(("worker number 0", with_(out=j([reading[0].rsplit("-", 1)[0] + "-0 " + reading[0].split(" ", 1)[1]] + reading[1:] + table))))
        m.append(("worker number above cpu_count", with_(out=j([f"{prefix}-{cpu_count({}) + 1} " + reading[0].split(" ", 1)[1]] + reading[1:] + table))))
        m.append(("another start method's prefix", with_(out=run.out.replace(prefix + "-", other + "-"))))
        m.append(("tie order reversed", with_(out=j(reading + table[:3] + swapped))))
        m.append(("a count off by one", with_(out=j(reading + table[:3] + [f"{word}: {int(count) + 1:5}"] + rows[1:]))))
        m.append(("padding one wider", with_(out=j(reading + table[:3] + [r.replace(":", " :", 1) for r in rows]))))
        m.append(("blank line before the header lost", with_(out=j(reading + table[1:]))))
        m.append(("only 19 words", with_(out=j(reading + table[:-1]))))
        m.append(("a 21st word", with_(out=j(lines + [rows[-1]]))))
    return m


def self_test() -> int:
    problems = []
    pid = os.getpid()
    for name, example in EXAMPLES.items():
        for good in _good_runs(name, pid):
            ctx = {"pid": good.pid}
            errs = check_run(example, good, ctx)
            if errs:
                problems.append(f"{name}: a correct run was rejected:\n" + "\n".join(errs))
            for why, bad in _mutations(good, name):
                errs = check_run(example, bad, {"pid": bad.pid})
                if not errs:
                    problems.append(f"{name}: a broken run was accepted ({why}; merged={good.err is None})")
    # Variants the spec allows must pass too: the other order of example 4, the TERMINATED-line
    # race of example 8, another form of example 9's exception report.
    term = _good_runs("multiprocessing_terminate", pid)[0].out
    started = f"pid={pid + 1} parent={pid} started> True\nJOINED"
    allowed = [
        ("multiprocessing_names", "".join(ln + "\n" for ln in NAMES_ORDER_A), ""),
        ("multiprocessing_terminate", term.replace(started, started.replace("started> True", "stopped exitcode=-SIGTERM> False")), ""),
        ("multiprocessing_terminate", term.replace(started, started.replace("started> True", "stopped exitcode=-SIGTERM> True")), ""),
        ("multiprocessing_exitcode", "".join(ln + "\n" for ln in EXITCODE_STDOUT),
         "Process raises:\nTraceback (most recent call last):\n  raises()\nRuntimeError: There was an error!\n"),
        ("multiprocessing_event", "".join(ln + "\n" for ln in EVENT_STARTING + EVENT_TIMED_OUT + EVENT_SET), ""),
        ("multiprocessing_lock", "".join(ln + "\n" for ln in LOCK_LINES), ""),
        ("multiprocessing_condition", "".join(ln + "\n" for ln in CONDITION_SEQUENCE + CONDITION_RUNNING), ""),
    ]
    for name, out, err in allowed:
        errs = check_run(EXAMPLES[name], Run(rc=0, out=out, err=err, pid=pid), {"pid": pid})
        good = _good_runs(name, pid)[0]
        if errs or (out, err) == (good.out, good.err):
            problems.append(f"{name}: an allowed variant was rejected (or not built):\n" + "\n".join(errs))
    # The pool rules follow the start method of the run: each accepts its own worker names only.
    for method in POOL_WORKER_PREFIX:
        for name, out in (("multiprocessing_pool", _pool_good_lines(0, method)),
                          ("multiprocessing_pool_maxtasksperchild", _pool_good_lines(2, method)),
                          ("multiprocessing_wordcount", _wordcount_good_lines(method))):
            run = Run(rc=0, out="".join(ln + "\n" for ln in out), err="", pid=pid)
            for checked_as in POOL_WORKER_PREFIX:
                errs = check_run(EXAMPLES[name], run, {"pid": pid, "start_method": checked_as})
                if checked_as == method and errs:
                    problems.append(f"{name}: a correct {method} run was rejected:\n" + "\n".join(errs))
                if checked_as != method and not errs:
                    problems.append(f"{name}: {method} worker names were accepted under {checked_as}")
    # The word-count fixtures make the top 20 unambiguous, and the reference applies the rules.
    table = wordcount_reference(WORDCOUNT_FIXTURES)
    if len(table) < 21 or table[19][1] == table[20][1]:
        problems.append("wordcount_fixtures: need 21 words or more and no tie between the 20th and 21st counts")
    # Worked out by hand from the fixtures: `words` first appears after `pool`, so it is listed first.
    if table[:5] != [("worker", 19), ("process", 13), ("queue", 10), ("words", 8), ("pool", 8)]:
        problems.append(f"wordcount_reference() on the fixtures does not start as counted by hand: {table[:5]}")
    sample = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"golden-selftest-{pid}.rst")
    try:
        with open(sample, "w", encoding="ascii") as f:
            f.write("  .. skipped:: words\n...skipped too\nEnd_of_header Worker-1 python3 0x1f The a.b\n\tAND tab ..x\nlast")
        words = reference_words(sample)
    finally:
        os.remove(sample)
    if words != ["end", "header", "worker", "b", "tab", "x", "last"]:
        problems.append(f"reference_words() does not apply the word-count rules: {words}")
    # The leftover-process rules: this process is alive and in its own process group.
    if process_gone(pid, os.getpgrp()):
        problems.append("process_gone() says a live process is gone")
    if pid not in survivors(os.getpgrp()):
        problems.append("survivors() misses a live process of the group")
    if daemon_gone(Run(rc=0, out="", err="", pid=os.getpgrp()), {"bindings": {"PID1": pid}}) == []:
        problems.append("daemon_gone() accepts a daemon that is still running")
    # One real failing comparison, to show what a failure looks like.
    demo = check_run(EXAMPLES["multiprocessing_daemon_join"],
                     Run(rc=0, out="Starting: daemon\nStarting: non-daemon\nExiting : non-daemon\n", err="", pid=pid),
                     {"pid": pid})
    print("example of a failure report:\n" + "\n".join(demo) + "\n")
    if problems:
        print("\n".join(problems))
        print("golden self-test: FAILED")
        return 1
    print(f"golden self-test: passed ({len(EXAMPLES)} examples)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true", help="check that the rules reject broken output")
    ap.add_argument("--cwd", default=os.getcwd(), help="working directory of the binary")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds before the binary is killed")
    ap.add_argument("name", nargs="?", choices=sorted(EXAMPLES), help="the example's base name")
    ap.add_argument("binary", nargs="?", help="path of the port's binary")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.name or not args.binary:
        ap.error("NAME and BINARY are required")
    return test_binary(args.name, args.binary, args.cwd, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
