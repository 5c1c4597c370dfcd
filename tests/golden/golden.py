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
    failures = []
    runs = [False] + ([True] if example.merged else [])
    for merged in runs:
        label = "run with stdout and stderr merged on one pipe" if merged else "run with separate stdout and stderr pipes"
        run = run_binary(binary, cwd, timeout, merged=merged)
        ctx = {"pid": run.pid, "timeout": timeout}
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
    if name == "multiprocessing_get_logger" and run.err is not None:
        m.append(("debug line present", with_(err=run.err + '[DEBUG/MainProcess] running the remaining "atexit" finalizers\n')))
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
    ]
    for name, out, err in allowed:
        errs = check_run(EXAMPLES[name], Run(rc=0, out=out, err=err, pid=pid), {"pid": pid})
        good = _good_runs(name, pid)[0]
        if errs or (out, err) == (good.out, good.err):
            problems.append(f"{name}: an allowed variant was rejected (or not built):\n" + "\n".join(errs))
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
