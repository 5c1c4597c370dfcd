"""Python 3.12's authkey challenge, for interpreters that predate it.

multiprocessing.connection in Python 3.12 and later challenges with b'#CHALLENGE#{sha256}' plus
40 random bytes and expects b'{sha256}' plus HMAC-SHA256 over everything after '#CHALLENGE#';
it answers a challenge in the digest the challenge names ('md5', 'sha256', 'sha384', 'sha3_256',
'sha3_384'), and treats a 20-byte challenge or a 16-byte answer as the legacy HMAC-MD5 protocol
of 3.11 and earlier. This module implements that protocol from its description, over the framing
of the running interpreter's own multiprocessing.connection.Connection, so that mproc's default
(SHA-256) path is tested against it on a machine whose python3 is 3.11. Where a 3.12+ interpreter
is installed, interop_test.py also runs against the real module.

Knobs for the tests: the digest a listener asks for, and answers a client sends instead of the
honest one (a downgrade to MD5).
"""

import hashlib
import hmac
import os
import socket
from multiprocessing.connection import AuthenticationError, Connection

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
ALLOWED_DIGESTS = {b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"}
RANDOM_SIZE = 40
LEGACY_CHALLENGE_SIZE = 20
MD5_SIZE = 16
CAP = 256


def split_digest(message):
    """(digest name, payload); name '' for the legacy forms (MD5)."""
    if len(message) in (LEGACY_CHALLENGE_SIZE, MD5_SIZE):
        return "", message
    if message.startswith(b"{"):
        end = message.find(b"}", 1, 2 + max(len(d) for d in ALLOWED_DIGESTS))
        if end > 0 and message[1:end] in ALLOWED_DIGESTS:
            return message[1:end].decode("ascii"), message[end + 1:]
    raise AuthenticationError("unsupported message length, missing digest prefix, or unsupported digest")


def deliver_challenge(conn, authkey, digest="sha256"):
    message = b"{%s}" % digest.encode("ascii") + os.urandom(RANDOM_SIZE)
    conn.send_bytes(CHALLENGE + message)
    response = conn.recv_bytes(CAP)
    try:
        name, mac = split_digest(response)
        expected = hmac.new(authkey, message, name or "md5").digest()
        if not hmac.compare_digest(expected, mac):
            raise AuthenticationError("digest received was wrong")
    except AuthenticationError:
        conn.send_bytes(FAILURE)
        raise
    conn.send_bytes(WELCOME)
    return name or "md5"


def answer_challenge(conn, authkey, answer=None):
    """Answers honestly unless `answer(message) -> bytes` says otherwise; returns the digest."""
    message = conn.recv_bytes(CAP)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError("Protocol error, expected challenge")
    message = message[len(CHALLENGE):]
    name, _ = split_digest(message)
    if answer is not None:
        response = answer(message)
    elif name:
        response = b"{%s}" % name.encode("ascii") + hmac.new(authkey, message, name).digest()
    else:
        response = hmac.new(authkey, message, "md5").digest()
    conn.send_bytes(response)
    if conn.recv_bytes(CAP) != WELCOME:
        raise AuthenticationError("digest sent was rejected")
    return name or "md5"


def _socket_for(address):
    family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
    return socket.socket(family, socket.SOCK_STREAM)


def client(address, authkey, answer=None):
    """A connected, authenticated Connection (Python 3.12's Client)."""
    sock = _socket_for(address)
    sock.connect(address)
    conn = Connection(sock.detach())
    try:
        answer_challenge(conn, authkey, answer)
        deliver_challenge(conn, authkey)
    except BaseException:
        conn.close()
        raise
    return conn


class Listener:
    """Python 3.12's Listener, one accept at a time; `digest` is what its challenges ask for."""

    def __init__(self, address, authkey, digest="sha256"):
        self._sock = _socket_for(address)
        if isinstance(address, tuple):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(address)
        self._sock.listen(8)
        self.address = self._sock.getsockname()
        self._authkey = authkey
        self._digest = digest
        self.answered_digest = None

    def accept(self):
        sock, _ = self._sock.accept()
        conn = Connection(sock.detach())
        try:
            self.answered_digest = deliver_challenge(conn, self._authkey, self._digest)
            answer_challenge(conn, self._authkey)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self):
        self._sock.close()


def digest_size(name):
    return hashlib.new(name).digest_size
