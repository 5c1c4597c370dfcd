"""mproc's Listener/Client and framing against Python's multiprocessing.connection.

usage: interop_test.py PEER [unittest options]

PEER is the connection_interop_peer program (interop_peer.cpp). The Python side is the
interpreter running this script, so CTest runs it once per interpreter found on the machine:

- Python 3.11 and earlier speak only the legacy HMAC-MD5 challenge. Against them the tests check
  that mproc interoperates when legacy_md5 is enabled, and refuses them (both directions, with
  AuthenticationError on both sides) when it is not.
- Python 3.12 and later speak the {sha256} challenge. Against them the tests check that mproc's
  defaults interoperate.
- Whatever the interpreter, py312_auth.py (Python 3.12's protocol implemented on this
  interpreter's framing) is the peer of the {sha256} tests, so the default path is tested on a
  machine whose only python3 is 3.11.

Every case sends messages of 0, 14, 70,000 and 1 MiB + 1 bytes both ways through send_bytes /
recv_bytes, and checks them byte for byte.
"""

import os
import secrets
import struct
import subprocess
import sys
import threading
import unittest
from multiprocessing import connection as mpc

import py312_auth

PEER = None
MODERN = sys.version_info >= (3, 12)
TIMEOUT = 30
MESSAGES = [b"", b"hello from Py", bytes(i % 251 for i in range(70000)), bytes(i % 253 for i in range((1 << 20) + 1))]


class Peer:
    """The C++ program as a subprocess."""

    def __init__(self, args, authkey):
        env = dict(os.environ)
        env.pop("MPROC_INTEROP_AUTHKEY", None)
        if authkey is not None:
            env["MPROC_INTEROP_AUTHKEY"] = authkey.hex()
        self.process = subprocess.Popen([PEER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env)

    def address(self):
        line = self.process.stdout.readline().split()
        assert line and line[0] == "ADDRESS", line
        return line[2] if line[1] == "unix" else (line[2], int(line[3]))

    def finish(self):
        out, err = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, out, err


def listen(family, authkey, *extra):
    peer = Peer(["listen", family, *extra], authkey)
    return peer, peer.address()


def connect_args(address):
    if isinstance(address, tuple):
        return ["connect", "tcp", address[0], str(address[1])]
    return ["connect", "unix", address]


def exchange_as_client(conn):
    for message in MESSAGES:
        conn.send_bytes(message)
        assert conn.recv_bytes() == b"echo:" + message, len(message)
    conn.send_bytes(b"bye")
    assert conn.recv_bytes() == b"bye"


def serve_as_server(conn):
    while True:
        message = conn.recv_bytes()
        if message == b"bye":
            conn.send_bytes(b"bye")
            return
        conn.send_bytes(b"echo:" + message)


def serve_in_thread(listener, errors):
    """Accepts one connection on a Python listener and serves the echo protocol."""

    def run():
        try:
            conn = listener.accept()
            try:
                serve_as_server(conn)
            finally:
                conn.close()
        except BaseException as error:  # reported to the test
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class PythonClientToMprocListener(unittest.TestCase):
    """Python's real multiprocessing.connection.Client against an mproc Listener."""

    def run_case(self, family, extra, python_key, mproc_key):
        peer, address = listen(family, mproc_key, *extra)
        try:
            conn = mpc.Client(address, authkey=python_key)
            exchange_as_client(conn)
            conn.close()
        finally:
            code, out, err = peer.finish()
        self.assertEqual(code, 0, err)
        self.assertIn("SERVED", out)

    def expect_refused(self, family, extra, python_key, mproc_key, mproc_words):
        peer, address = listen(family, mproc_key, *extra)
        with self.assertRaises(mpc.AuthenticationError) as raised:
            mpc.Client(address, authkey=python_key)
        self.assertIn("digest sent was rejected", str(raised.exception))
        code, out, err = peer.finish()
        self.assertEqual(code, 0, err)
        self.assertIn("ERROR AuthenticationError: " + mproc_words, out)

    def test_same_key_unix_and_tcp(self):
        key = secrets.token_bytes(32)
        # Before 3.12 only MD5: mproc must be told to accept it.
        extra = [] if MODERN else ["--legacy-md5"]
        self.run_case("unix", extra, key, key)
        self.run_case("tcp", extra, key, key)

    def test_no_authkey(self):
        self.run_case("unix", [], None, None)

    def test_wrong_key_fails_on_both_sides(self):
        extra = [] if MODERN else ["--legacy-md5"]
        self.expect_refused("tcp", extra, b"python's key", b"mproc's key", "digest received was wrong")

    @unittest.skipIf(MODERN, "Python 3.12+ speaks SHA-256")
    def test_legacy_client_refused_by_default(self):
        key = b"the same key"
        self.expect_refused("unix", [], key, key, "the peer uses HMAC-MD5")

    def test_long_length_form_is_read(self):
        # Python writes the 8-byte form only for messages over 2 GiB; it reads it for any size,
        # and so must mproc. Crafted with the framing's own primitives.
        peer, address = listen("unix", None)
        conn = mpc.Client(address)
        conn._send(struct.pack("!i", -1) + struct.pack("!Q", 5) + b"hello")
        self.assertEqual(conn.recv_bytes(), b"echo:hello")
        conn.send_bytes(b"bye")
        self.assertEqual(conn.recv_bytes(), b"bye")
        conn.close()
        self.assertEqual(peer.finish()[0], 0)


class MprocClientToPythonListener(unittest.TestCase):
    """An mproc Client against Python's real multiprocessing.connection.Listener."""

    def run_case(self, family, extra, python_key, mproc_key):
        address = ("127.0.0.1", 0) if family == "tcp" else None
        listener = mpc.Listener(address, family="AF_INET" if family == "tcp" else "AF_UNIX", authkey=python_key)
        errors = []
        thread = serve_in_thread(listener, errors)
        try:
            peer = Peer(connect_args(listener.address) + extra, mproc_key)
            code, out, err = peer.finish()
        finally:
            thread.join(TIMEOUT)
            listener.close()
        return code, out, err, errors

    def test_same_key_unix_and_tcp(self):
        key = secrets.token_bytes(32)
        extra = [] if MODERN else ["--legacy-md5"]
        for family in ("unix", "tcp"):
            code, out, err, errors = self.run_case(family, extra, key, key)
            self.assertEqual((code, out.strip()), (0, "OK"), err)
            self.assertEqual(errors, [])

    def test_wrong_key_fails_on_both_sides(self):
        extra = [] if MODERN else ["--legacy-md5"]
        code, out, err, errors = self.run_case("tcp", extra, b"python's key", b"mproc's key")
        self.assertEqual(code, 2, err)
        self.assertIn("ERROR AuthenticationError: digest sent was rejected", out)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], mpc.AuthenticationError)
        self.assertIn("digest received was wrong", str(errors[0]))

    @unittest.skipIf(MODERN, "Python 3.12+ speaks SHA-256")
    def test_legacy_listener_refused_by_default(self):
        code, out, err, errors = self.run_case("unix", [], b"k", b"k")
        self.assertEqual(code, 2, err)
        self.assertIn("ERROR AuthenticationError: the peer uses HMAC-MD5", out)
        # The Python listener sees the connection end before an answer.
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], (EOFError, OSError, mpc.AuthenticationError))


class Sha256ProtocolPeer(unittest.TestCase):
    """mproc's default (Python 3.12's {sha256} challenge) against py312_auth, on any interpreter."""

    def test_py312_client_to_mproc_listener(self):
        key = secrets.token_bytes(32)
        for family in ("unix", "tcp"):
            peer, address = listen(family, key)
            conn = py312_auth.client(address, key)
            exchange_as_client(conn)
            conn.close()
            code, out, err = peer.finish()
            self.assertEqual(code, 0, err)
            self.assertIn("SERVED", out)

    def test_mproc_client_to_py312_listener_in_each_digest(self):
        key = secrets.token_bytes(32)
        for digest in ("sha256", "sha384", "sha3_256", "sha3_384"):
            listener = py312_auth.Listener(("127.0.0.1", 0), key, digest=digest)
            errors = []
            thread = serve_in_thread(listener, errors)
            peer = Peer(connect_args(listener.address), key)
            code, out, err = peer.finish()
            thread.join(TIMEOUT)
            listener.close()
            self.assertEqual((code, out.strip()), (0, "OK"), (digest, err))
            self.assertEqual(errors, [])
            # mproc answers in the digest the challenge asks for.
            self.assertEqual(listener.answered_digest, digest)

    def test_mproc_challenges_with_sha256(self):
        key = b"k"
        peer, address = listen("unix", key)
        seen = {}

        def record(message):
            seen["challenge"] = message
            return b"{sha256}" + py312_auth.hmac.new(key, message, "sha256").digest()

        conn = py312_auth.client(address, key, answer=record)
        self.assertTrue(seen["challenge"].startswith(b"{sha256}"))
        self.assertEqual(len(seen["challenge"]), len(b"{sha256}") + 40)
        exchange_as_client(conn)
        conn.close()
        self.assertEqual(peer.finish()[0], 0)

    def test_wrong_key_fails_on_both_sides(self):
        peer, address = listen("tcp", b"mproc's key")
        with self.assertRaises(mpc.AuthenticationError) as raised:
            py312_auth.client(address, b"another key")
        self.assertIn("digest sent was rejected", str(raised.exception))
        code, out, err = peer.finish()
        self.assertIn("ERROR AuthenticationError: digest received was wrong", out)

        listener = py312_auth.Listener(("127.0.0.1", 0), b"python's key")
        errors = []
        thread = serve_in_thread(listener, errors)
        code, out, err = Peer(connect_args(listener.address), b"mproc's key").finish()
        thread.join(TIMEOUT)
        listener.close()
        self.assertEqual(code, 2, err)
        self.assertIn("ERROR AuthenticationError: digest sent was rejected", out)
        self.assertIsInstance(errors[0], mpc.AuthenticationError)

    def test_md5_downgrade_refused_unless_legacy(self):
        key = b"k"

        def md5_answer(message):  # what Python 3.12 itself would accept
            return b"{md5}" + py312_auth.hmac.new(key, message, "md5").digest()

        for extra, accepted in (([], False), (["--legacy-md5"], True)):
            peer, address = listen("unix", key, *extra)
            if accepted:
                conn = py312_auth.client(address, key, answer=md5_answer)
                exchange_as_client(conn)
                conn.close()
            else:
                with self.assertRaises(mpc.AuthenticationError):
                    py312_auth.client(address, key, answer=md5_answer)
            code, out, err = peer.finish()
            self.assertEqual(code, 0, err)
            self.assertEqual("SERVED" in out, accepted, out)


def main():
    global PEER
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    PEER = sys.argv.pop(1)
    print(f"interop: Python {sys.version.split()[0]} ({sys.executable}); "
          f"{'SHA-256' if MODERN else 'legacy HMAC-MD5'} protocol", file=sys.stderr)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
