"""mproc's ShareableList against Python's multiprocessing.shared_memory.ShareableList.

usage: shareable_list_interop.py PEER [unittest options]

PEER is the shareable_list_interop_peer program (shareable_list_peer.cpp). CTest runs this once
per interpreter found on the machine, 3.9 and later (3.8's ShareableList has another layout).

- Python attaches to a list made by mproc: the bytes are the ones Python writes for the same
  items, Python reads every item, changes every one (types too), and mproc reads the changes.
- mproc attaches to a list made by Python: its repr and format are Python's, it reads every item
  and changes every one; the bytes are then the ones Python writes for the same changes, and an
  item too long for its slot is refused with Python's message.

Python registers every segment it attaches to with its resource tracker, which would unlink the
C++ program's segment when this interpreter ends (CPython issue 82300; still so for ShareableList
in 3.13, which has no track argument): the attached segments are unregistered here.
"""

import subprocess
import sys
import unittest
from multiprocessing import resource_tracker, shared_memory

PEER = None
TIMEOUT = 30

# The same lists as shareable_list_peer.cpp's.
VALUES = [42, -7, 2.5, -273.154, True, False, None, "howdy", "", "exactly8", b"HoWdY", b"", b"\x00\x01bin", 2**62,
          1e300]
CHANGED = [-1, "str", None, 7, 1.25, "xyz", b"bytes", "\u00f1and\u00fa", "EXACTLY8", "sixteen bytes!!!", True,
           b"\x00\x00x", -2**63, float("inf"), False]


def untrack(shm):
    resource_tracker.unregister(shm._name, "shared_memory")


def python_image(items, changes=None):
    """The bytes Python writes for a list of `items`, after setting `changes` item by item."""
    sl = shared_memory.ShareableList(items)
    try:
        for i, value in enumerate(changes or []):
            sl[i] = value
        return bytes(sl.shm.buf[:sl.shm.size]), sl.format
    finally:
        sl.shm.close()
        sl.shm.unlink()


class ShareableListInterop(unittest.TestCase):

    def run_peer(self, *args):
        return subprocess.Popen([PEER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def test_python_attaches_to_a_list_made_by_mproc(self):
        peer = self.run_peer("create")
        try:
            line = peer.stdout.readline().split()
            self.assertEqual(line[0], "NAME", line)
            name, cpp_format = line[1], line[2]
            sl = shared_memory.ShareableList(name=name)
            untrack(sl.shm)
            expected_bytes, expected_format = python_image(VALUES)
            self.assertEqual(cpp_format, expected_format)
            self.assertEqual(sl.format, expected_format)
            self.assertEqual(bytes(sl.shm.buf[:len(expected_bytes)]), expected_bytes)
            self.assertEqual(list(sl), VALUES)
            self.assertEqual(len(sl), len(VALUES))
            for i, value in enumerate(CHANGED):
                sl[i] = value
            with self.assertRaisesRegex(ValueError, "^bytes/str item exceeds available storage$"):
                sl[7] = "far too long"
            self.assertEqual(list(sl), CHANGED)
            sl.shm.close()
            out, err = peer.communicate("changed\n", timeout=TIMEOUT)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
        self.assertEqual((peer.returncode, out.strip()), (0, "OK"), err)
        # mproc unlinked it.
        with self.assertRaises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)

    def check_mproc_attaches(self, items, mode):
        sl = shared_memory.ShareableList(items)
        try:
            expected_repr = repr(sl)
            expected_format = sl.format
            peer = self.run_peer("attach", sl.shm.name, mode)
            out, err = peer.communicate(timeout=TIMEOUT)
            self.assertEqual(peer.returncode, 0, out + err)
            lines = out.splitlines()
            self.assertEqual(lines[0], "REPR " + expected_repr)
            self.assertEqual(lines[1], "FORMAT " + expected_format)
            return sl, lines[2:]
        except BaseException:
            sl.shm.close()
            sl.shm.unlink()
            raise

    def test_mproc_attaches_to_a_list_made_by_python(self):
        sl, lines = self.check_mproc_attaches(VALUES, "full")
        try:
            self.assertEqual(lines, ["ERROR bytes/str item exceeds available storage"])
            self.assertEqual(list(sl), CHANGED)
            expected_bytes, expected_format = python_image(VALUES, CHANGED)
            self.assertEqual(sl.format, expected_format)
            self.assertEqual(bytes(sl.shm.buf[:sl.shm.size]), expected_bytes)
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_mproc_attaches_to_an_empty_list_made_by_python(self):
        sl, lines = self.check_mproc_attaches([], "empty")
        sl.shm.close()
        sl.shm.unlink()
        self.assertEqual(lines, [])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    PEER = sys.argv.pop(1)
    unittest.main()
