#pragma once
// The authkey challenge of Python's multiprocessing.connection, as a state machine that does no
// I/O: the caller writes output() to the peer and feeds back exactly wanted() bytes at a time.
// The same machine runs blocking in Client() and non-blocking, many at once, in
// Listener::accept(); the fuzz target drives it with arbitrary bytes.
//
// Each side challenges the other; the listener (server) goes first:
//   server -> client   #CHALLENGE#{sha256}<40 random bytes>
//   client -> server   {sha256}<HMAC-SHA256(key, "{sha256}<40 bytes>")>
//   server -> client   #WELCOME#   (or #FAILURE#, and the server fails)
//   ...then the same three messages with the roles swapped.
// Every message is one frame (frame.hpp) of at most kMaxHandshakeMessageSize bytes, and the
// machine never asks for a byte past the frame it is reading, so the application's first
// message is left in the socket for the Connection.
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace mproc::transport {

enum class HandshakeRole { server, client };

// The length of the random part of our challenges (Python 3.12's MESSAGE_LENGTH).
inline constexpr std::size_t kChallengeRandomSize = 40;

class Handshake {
public:
    // `legacy_md5`: answer MD5-only challenges and accept MD5 answers (Python 3.11 and earlier).
    // The random part of our challenge comes from getrandom(2).
    Handshake(HandshakeRole role, std::span<const std::byte> authkey, bool legacy_md5);
    // With a given random part, for tests and fuzzing.
    Handshake(HandshakeRole role, std::span<const std::byte> authkey, bool legacy_md5,
              std::span<const std::byte, kChallengeRandomSize> challenge_random);

    // Framed bytes to send now; mark them sent with consume_output().
    std::span<const std::byte> output() const noexcept { return {output_.data() + output_sent_, output_.size() - output_sent_}; }
    void consume_output(std::size_t count) noexcept;

    // How many bytes feed() wants next (never more than the rest of the current frame part);
    // 0 when the machine reads nothing more.
    std::size_t wanted() const noexcept;

    // Takes up to wanted() bytes from the peer. Throws AuthenticationError when the peer's
    // message is malformed or its digest wrong; when the protocol says to tell the peer
    // (#FAILURE#), that message is in output() for the caller to send before it closes.
    void feed(std::span<const std::byte> bytes);

    // Every step done and every byte of output consumed.
    bool done() const noexcept { return step_ == Step::done && output().empty(); }

private:
    enum class Step { send_challenge, read_response, read_peer_challenge, read_welcome, done, failed };
    enum class FramePart { first_word, long_length, body };

    void next_step();
    void handle_message();
    void verify_response(std::span<const std::byte> response);
    void answer_challenge(std::span<const std::byte> message);
    void check_welcome(std::span<const std::byte> message);
    void queue_message(std::span<const std::byte> message);
    [[noreturn]] void fail(const std::string& why);

    HandshakeRole role_;
    std::vector<std::byte> key_;
    bool legacy_md5_;
    // "{sha256}" + the random bytes: what our challenge asks the peer to sign.
    std::vector<std::byte> our_challenge_;
    // The role's four steps in order, and the one being run.
    std::array<Step, 4> plan_{};
    std::size_t plan_next_ = 0;
    Step step_ = Step::done;

    FramePart part_ = FramePart::first_word;
    std::array<std::byte, 12> header_{};  // the 4-byte word and, in the long form, 8 more
    std::size_t header_filled_ = 0;
    std::size_t body_length_ = 0;
    std::vector<std::byte> body_;

    std::vector<std::byte> output_;
    std::size_t output_sent_ = 0;
};

}  // namespace mproc::transport
