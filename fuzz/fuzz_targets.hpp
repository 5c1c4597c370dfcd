#pragma once
// The bodies of the fuzz targets, shared by the libFuzzer entry points (fuzz/*_fuzz.cpp, built
// with clang by scripts/fuzz) and the unit tests that replay the corpus and random inputs
// (tests/faults/connection_faults_test.cpp, built with the project's compiler).
//
// Each body feeds arbitrary bytes to the real code and lets only the documented exceptions out of
// it. Anything else (a crash, a sanitizer report, an undocumented exception, a hang) is a bug:
// the exception escapes the fuzz entry point, which aborts.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/connection.hpp"
#include "mproc/errors.hpp"
#include "transport/handshake.hpp"

namespace mproc::fuzz {

// Messages a fuzzed stream may be decoded as.
struct Record {
    std::string name;
    std::vector<std::int32_t> values;
    std::optional<std::map<std::string, double>> attributes;
    std::variant<std::monostate, std::uint64_t, std::string> tag;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, values, attributes, tag);
    }
};

// The frame reader: `data` is what a peer wrote into a socket before closing it; the first byte
// picks how it is read (bits 3 and up) and the size limit (bits 0-2). Reads messages until end of
// file or an error, which must be one of the
// documented ones and must leave the connection closed when the stream is out of step.
inline void frame_reader_one_input(std::span<const std::uint8_t> data) {
    if (data.empty()) return;
    const std::uint8_t mode = data[0];
    data = data.subspan(1);
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return;
    Connection reader = Connection::from_fd(fds[0]);
    // A small limit, so that lengths just over it are found quickly; it is the check that
    // matters, not its value.
    reader.set_max_message_size(std::size_t{1} << (10 + mode % 8));
    std::size_t written = 0;
    while (written < data.size()) {
        const ssize_t n = ::send(fds[1], data.data() + written, data.size() - written, MSG_NOSIGNAL);
        if (n <= 0) break;  // fuzz inputs are far below the socket buffer; stop rather than block
        written += static_cast<std::size_t>(n);
    }
    ::close(fds[1]);
    for (int messages = 0; messages < 4096; ++messages) {
        try {
            switch ((mode >> 3) % 7) {
                case 0: reader.recv_bytes(); break;
                case 1: reader.recv_bytes(mode % 64); break;
                case 2: {
                    std::array<std::byte, 16> buffer{};
                    reader.recv_bytes_into(buffer, mode % 17);
                    break;
                }
                case 3: reader.recv<Record>(); break;
                case 4: reader.recv<std::vector<std::string>>(); break;
                // Fixed-size values: the length and the value are read together.
                case 5: reader.recv<std::uint64_t>(); break;
                default: reader.recv<bool>(); break;
            }
        } catch (const EOFError&) {
            return;
        } catch (const ProtocolError&) {
            if (!reader.closed()) throw;  // a protocol error must close the connection
            return;
        } catch (const DecodeError&) {
            if (!reader.closed()) throw;
            return;
        } catch (const BufferTooShort&) {
            if (reader.closed()) throw;  // the message was read whole: the stream is in step
        } catch (const UsageError&) {
            return;  // recv_bytes_into with an offset past the buffer
        }
    }
}

// The authkey challenge: `data` plays the peer. The first byte picks the role, whether MD5 is
// allowed, and whether `data` is the whole of the peer's side (random bytes) or a tampering of an
// honest peer's bytes (so that the later steps, which random bytes never reach because they need
// a valid HMAC, are fuzzed too).
inline void handshake_one_input(std::span<const std::uint8_t> data) {
    using transport::Handshake;
    using transport::HandshakeRole;
    if (data.empty()) return;
    const std::uint8_t mode = data[0];
    data = data.subspan(1);
    const HandshakeRole role = (mode & 1) ? HandshakeRole::server : HandshakeRole::client;
    const bool legacy = (mode & 2) != 0;
    static constexpr std::array<std::byte, 3> key = {std::byte{'k'}, std::byte{'e'}, std::byte{'y'}};
    std::array<std::byte, transport::kChallengeRandomSize> fixed{};
    try {
        Handshake subject(role, key, legacy, fixed);
        if ((mode & 4) == 0) {
            // Random bytes as the peer's whole side.
            std::size_t at = 0;
            while (at < data.size() && subject.wanted() > 0) {
                subject.consume_output(subject.output().size());
                const std::size_t n = std::min(subject.wanted(), data.size() - at);
                subject.feed(std::as_bytes(data.subspan(at, n)));
                at += n;
            }
            return;
        }
        // An honest peer with the same key, whose bytes are flipped where `data` says:
        // pairs (position, xor mask).
        Handshake peer(role == HandshakeRole::server ? HandshakeRole::client : HandshakeRole::server, key,
                       (mode & 8) != 0, fixed);
        std::size_t peer_offset = 0;
        for (int round = 0; round < 16 && !(subject.done() && peer.done()); ++round) {
            std::vector<std::byte> to_peer(subject.output().begin(), subject.output().end());
            subject.consume_output(to_peer.size());
            while (!to_peer.empty() && peer.wanted() > 0) {
                const std::size_t n = std::min(peer.wanted(), to_peer.size());
                peer.feed(std::span(to_peer).first(n));
                to_peer.erase(to_peer.begin(), to_peer.begin() + static_cast<std::ptrdiff_t>(n));
            }
            std::vector<std::byte> from_peer(peer.output().begin(), peer.output().end());
            peer.consume_output(from_peer.size());
            for (std::size_t i = 0; i + 1 < data.size(); i += 2)
                if (data[i] >= peer_offset && data[i] < peer_offset + from_peer.size())
                    from_peer[data[i] - peer_offset] ^= static_cast<std::byte>(data[i + 1]);
            peer_offset += from_peer.size();
            while (!from_peer.empty() && subject.wanted() > 0) {
                const std::size_t n = std::min(subject.wanted(), from_peer.size());
                subject.feed(std::span(from_peer).first(n));
                from_peer.erase(from_peer.begin(), from_peer.begin() + static_cast<std::ptrdiff_t>(n));
            }
        }
    } catch (const AuthenticationError&) {
    }
}

}  // namespace mproc::fuzz
