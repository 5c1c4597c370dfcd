#!/usr/bin/env python3
"""scripts/check-layers on small fake trees: a clean tree passes, an upward or sideways include
fails naming file:line and both floors, a public header that includes a file of src/ fails, and a
file no floor covers fails. Standard library only; run by ctest (tests/CMakeLists.txt)."""

import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "check-layers")

LAYERS = """# Floors

Prose around the block is ignored.

```layers
level base
level low other
level high
allow other -> low
src/base/              base
src/low/               low
src/other/             other
src/high/              high
src/high/odd.cpp       base
include/mproc/api.hpp  high
include/mproc/base.hpp base
```
"""


class CheckLayersTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        self.write("docs/architecture.md", LAYERS)
        self.write("src/base/b.hpp", "#pragma once\n")
        self.write("src/low/l.cpp", '#include "base/b.hpp"\n')
        self.write("src/other/o.cpp", '#include "low/l.hpp"\n#include "base/b.hpp"\n')
        self.write("src/low/l.hpp", "#pragma once\n")
        self.write("src/high/h.cpp", '#include "mproc/api.hpp"\n#include "low/l.hpp"\n')
        self.write("src/high/odd.cpp", '#include "base/b.hpp"\n')
        self.write("include/mproc/api.hpp", '#pragma once\n#include <vector>\n#include "mproc/base.hpp"\n')
        self.write("include/mproc/base.hpp", "#pragma once\n")

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, path, text):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)

    def add_upward_include(self, prefix=""):
        """src/base/b.cpp includes src/high/h.hpp (after `prefix` lines): base -> high."""
        self.write("src/base/b.cpp", prefix + '#include "high/h.hpp"\n')
        self.write("src/high/h.hpp", '#include "base/b.hpp"\n')

    def run_check(self, *args):
        done = subprocess.run([sys.executable, SCRIPT, "--root", self.root, *args],
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr

    def test_clean_tree_passes(self):
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)
        self.assertIn("0 violations", out)

    def test_upward_include_fails_naming_file_line_and_floors(self):
        self.add_upward_include("#include <cstdio>\n\n")
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("src/base/b.cpp:3: includes src/high/h.hpp: upward include from floor base to floor high", out)

    def test_file_owned_by_a_lower_floor_than_its_folder(self):
        self.write("src/high/odd.cpp", '#include "low/l.hpp"\n')
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("src/high/odd.cpp:1: includes src/low/l.hpp: upward include from floor base to floor low", out)

    def test_sideways_include_fails_unless_allowed(self):
        self.write("src/low/l.cpp", '#include "other/o.hpp"\n')
        self.write("src/other/o.hpp", "#pragma once\n")
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("src/low/l.cpp:1: includes src/other/o.hpp: sideways include from floor low to floor other", out)
        self.assertNotIn("src/other/o.cpp", out)  # other -> low is allowed

    def test_public_header_including_src_fails(self):
        self.write("include/mproc/api.hpp", '#pragma once\n#include "base/b.hpp"\n')
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("include/mproc/api.hpp:2: includes src/base/b.hpp: a public header may not include a file of src/",
                      out)

    def test_file_without_floor_fails(self):
        self.write("src/elsewhere/e.cpp", "\n")
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("src/elsewhere/e.cpp: no floor declared", out)

    def test_unresolved_include_fails(self):
        self.write("src/low/l.cpp", '#include "nowhere/n.hpp"\n')
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn("src/low/l.cpp:1: cannot find \"nowhere/n.hpp\"", out)

    def test_figures(self):
        self.add_upward_include()
        rc, out = self.run_check("--figures")
        self.assertEqual(rc, 1, out)
        self.assertIn("files: 10 (14 lines)", out)
        self.assertIn("floors: 4 on 3 levels: base -> low, other -> high", out)
        self.assertIn("1 upward, 0 sideways", out)
        self.assertIn("base -> high: 1 (up)", out)
        self.assertIn("src/base <-> src/high", out)
        self.assertIn("largest files (lines): include/mproc/api.hpp 3", out)

    def test_bad_declaration_is_a_usage_error(self):
        self.write("docs/architecture.md", LAYERS.replace("allow other -> low", "allow other -> high"))
        rc, out = self.run_check()
        self.assertEqual(rc, 2, out)
        self.assertIn("`allow` is for two floors of one level", out)

    def test_help(self):
        rc, out = self.run_check("--help")
        self.assertEqual(rc, 0, out)
        self.assertIn("--figures", out)


if __name__ == "__main__":
    unittest.main()
