"""bench.smoke: the tooling works end to end; nothing about speed.

usage: smoke_test.py MPROC_BENCH REPORT
Runs one short round of the process figures, checks that every line is a well-formed row for
both mproc and raw, and that bench/report turns them into a markdown table.
"""

import json
import subprocess
import sys
import tempfile

bench_program, report_script = sys.argv[1], sys.argv[2]

output = subprocess.run([bench_program, "--json", "--rounds", "1", "--min-time", "0.001", "process."],
                        check=True, capture_output=True, text=True).stdout
rows = [json.loads(line) for line in output.splitlines()]
assert rows, "mproc_bench printed nothing"
for row in rows:
    assert set(row) >= {"name", "impl", "value", "unit"}, row
    assert row["name"].startswith("process.") and row["value"] > 0, row
names = {row["name"] for row in rows}
for name in names:
    impls = {row["impl"] for row in rows if row["name"] == name}
    assert impls == {"mproc", "raw"}, (name, impls)

with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as jsonl:
    jsonl.write(output)
    jsonl.flush()
    # The report runs under this interpreter: the table needs no matplotlib.
    table = subprocess.run([sys.executable, report_script, jsonl.name],
                           check=True, capture_output=True, text=True).stdout
lines = table.splitlines()
assert lines[0].startswith("| figure | unit | mproc | raw | python |"), table
for name in names:
    assert any(f"`{name}`" in line for line in lines[2:]), (name, table)
print(table, end="")
