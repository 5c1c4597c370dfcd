"""The Python side of connection_python_peer: a multiprocessing.connection.Client talking to an
mproc Listener. Usage: connection_python_peer.py ADDRESS, with the authkey in hex in the
environment variable MPROC_EXAMPLE_AUTHKEY."""

import os
import sys
from multiprocessing.connection import AuthenticationError, Client

address = sys.argv[1]
authkey = bytes.fromhex(os.environ["MPROC_EXAMPLE_AUTHKEY"])
version = ".".join(map(str, sys.version_info[:3]))

try:
    conn = Client(address, authkey=authkey)
except AuthenticationError as error:
    print(f"Python {version}: authentication failed: {error}", flush=True)
    sys.exit(1)

with conn:
    for line in [f"hello from Python {version}", "the quick brown fox jumps over the lazy dog", ""]:
        conn.send_bytes(line.encode())
        print(f"Python: {line!r} -> {conn.recv_bytes().decode()}", flush=True)
    conn.send_bytes(b"bye")
    assert conn.recv_bytes() == b"bye"
