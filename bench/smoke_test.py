"""bench.smoke: the tooling works end to end; nothing about speed.

usage: smoke_test.py MPROC_BENCH REPORT COMPARE
Runs one short round of the process figures, checks that every line is a well-formed row for
both mproc and raw (median between min and max), that bench/report turns them into a markdown
table with each figure's range of rounds, and that bench/compare
lists every figure, finds a run within noise of itself and flags a figure that doubled. Built
with the MPI pool, the program's mpi.pool figures skip cleanly when it runs without mpirun.
"""

import json
import subprocess
import sys
import tempfile

bench_program, report_script, compare_script = sys.argv[1], sys.argv[2], sys.argv[3]

output = subprocess.run([bench_program, "--json", "--rounds", "1", "--min-time", "0.001", "process."],
                        check=True, capture_output=True, text=True).stdout
rows = [json.loads(line) for line in output.splitlines()]
assert rows, "mproc_bench printed nothing"
for row in rows:
    assert set(row) >= {"name", "impl", "value", "unit", "min", "max"}, row
    assert row["name"].startswith("process.") and row["value"] > 0, row
    assert row["min"] <= row["value"] <= row["max"], row
names = {row["name"] for row in rows}
for name in names:
    impls = {row["impl"] for row in rows if row["name"] == name}
    assert impls == {"mproc", "raw"}, (name, impls)

mpi = subprocess.run([bench_program, "--json", "--rounds", "1", "mpi.pool"], capture_output=True, text=True)
if "no figure matches 'mpi.pool'" not in mpi.stderr:  # built with the MPI pool
    assert mpi.returncode == 0 and mpi.stdout == "", mpi
    assert "mpi.pool.map.chunk1: skipped: needs serving ranks" in mpi.stderr, mpi.stderr

with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as jsonl:
    jsonl.write(output)
    jsonl.flush()
    # The report runs under this interpreter: the table needs no matplotlib.
    table = subprocess.run([sys.executable, report_script, jsonl.name],
                           check=True, capture_output=True, text=True).stdout
    same = subprocess.run([sys.executable, compare_script, jsonl.name, jsonl.name],
                          check=True, capture_output=True, text=True).stdout
    for name in names:
        assert f"| {name} | mproc |" in same and f"| {name} | raw |" in same, (name, same)
    assert "0 figure(s) outside" in same, same
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as slower:
        for row in rows:
            if row["impl"] == "mproc":
                factor = 0.5 if row["unit"].endswith("/s") else 2.0
                row = dict(row, value=row["value"] * factor, min=row["value"] * factor, max=row["value"] * factor)
            slower.write(json.dumps(row) + "\n")
        slower.flush()
        flagged = subprocess.run([sys.executable, compare_script, jsonl.name, slower.name],
                                 check=True, capture_output=True, text=True).stdout
    assert f"{len(names)} figure(s) outside" in flagged, flagged
    assert "2.00x" in flagged, flagged
lines = table.splitlines()
assert lines[0].startswith("| figure | unit | mproc | raw | python |"), table
for name in names:
    line = next((line for line in lines[2:] if f"`{name}`" in line), None)
    assert line, (name, table)
    mproc_cell = line.split("|")[3].strip()
    assert mproc_cell.endswith(")") and "–" in mproc_cell, ("no median (min–max)", line)
print(table, end="")
