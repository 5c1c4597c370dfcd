#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/ (checked in; rerun after changing
the input layout of fuzz_targets.hpp). Each seed is a valid or nearly valid input, so that the
fuzzer starts from the interesting shapes rather than from nothing."""

import hashlib
import hmac
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def frame(payload):
    return struct.pack("!i", len(payload)) + payload


def long_frame(payload):
    return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload


def write(target, name, data):
    directory = os.path.join(here, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# Frame reader: mode byte, then the stream. Modes: bits 3 and up choose the read, modulo 7
# (0 recv_bytes, 1 recv_bytes(maxlength), 2 recv_bytes_into, 3 recv<Record>,
# 4 recv<vector<string>>, 5 recv<uint64_t>, 6 recv<bool>).
def mode(read, low=0):
    return bytes([(read << 3) | low])


record = (b"\x04name" + b"\x02" + struct.pack("<ii", 1, -2) + b"\x01\x01" + b"\x01k" + struct.pack("<d", 1.5)
          + b"\x01" + struct.pack("<Q", 7))
write("frame_reader", "bytes_two_messages", mode(0) + frame(b"hello") + frame(b""))
write("frame_reader", "bytes_long_form", mode(0) + long_frame(b"abc"))
write("frame_reader", "bytes_truncated_body", mode(0) + struct.pack("!i", 10) + b"abc")
write("frame_reader", "bytes_negative_length", mode(0) + struct.pack("!i", -2))
write("frame_reader", "bytes_over_limit", mode(0, 1) + struct.pack("!i", 1 << 20))
write("frame_reader", "maxlength", mode(1, 5) + frame(b"12345") + frame(b"123456"))
write("frame_reader", "into_too_short", mode(2, 3) + frame(b"0123456789abcdefXYZ") + frame(b"ok"))
write("frame_reader", "record", mode(3) + frame(record))
write("frame_reader", "strings", mode(4) + frame(b"\x02\x03abc\x00"))
write("frame_reader", "fixed_u64", mode(5) + frame(struct.pack("<Q", 7)) + frame(b"ab") + frame(struct.pack("<Q", 8)))
write("frame_reader", "fixed_u64_long_form", mode(5) + long_frame(struct.pack("<Q", 7)))
write("frame_reader", "fixed_bool", mode(6) + frame(b"\x01") + frame(b"\x02"))

# Handshake: mode byte (bit 0 server, bit 1 legacy MD5, bit 2 tamper an honest peer, bit 3
# legacy peer), then the peer's bytes or (position, xor) pairs.
key = b"key"
challenge = b"#CHALLENGE#{sha256}" + bytes(40)
answer = b"{sha256}" + hmac.new(key, challenge[11:], hashlib.sha256).digest()
write("handshake", "client_sees_challenge", bytes([0]) + frame(challenge) + frame(b"#WELCOME#"))
write("handshake", "client_sees_legacy_challenge", bytes([2]) + frame(b"#CHALLENGE#" + bytes(20)))
write("handshake", "server_gets_answer", bytes([1]) + frame(answer) + frame(b"#CHALLENGE#{sha384}" + bytes(30)))
write("handshake", "server_gets_md5", bytes([3]) + frame(hmac.new(key, challenge[11:], hashlib.md5).digest()))
write("handshake", "server_gets_oversize", bytes([1]) + struct.pack("!i", 1 << 30))
write("handshake", "tamper_nothing", bytes([4 | 1]))
write("handshake", "tamper_answer", bytes([4 | 0, 70, 1]))
write("handshake", "tamper_welcome", bytes([4 | 1, 100, 0x20]))
