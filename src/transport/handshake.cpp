#include "transport/handshake.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string_view>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mproc/connection.hpp"
#include "mproc/errors.hpp"
#include "transport/frame.hpp"

namespace mproc::transport {

namespace {

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
// Python 3.11's challenge carries 20 random bytes and no digest name; an MD5 answer is 16 bytes.
// No modern message has either length, which is how Python 3.12 tells the protocols apart.
constexpr std::size_t kLegacyChallengeSize = 20;
constexpr std::size_t kMd5Size = 16;
// The longest name in the allowed list ("sha3_256"), bounding the search for '}'.
constexpr std::size_t kMaxDigestNameSize = 8;

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

bool starts_with(std::span<const std::byte> data, std::string_view prefix) {
    return data.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), data.begin(), [](char c, std::byte b) {
               return static_cast<std::byte>(c) == b;
           });
}

bool equals(std::span<const std::byte> data, std::string_view text) {
    return data.size() == text.size() && starts_with(data, text);
}

// The digests Python 3.12 allows in a "{name}" prefix. MD5 is legacy-only in mproc.
const EVP_MD* digest_by_name(std::string_view name) {
    if (name == "sha256") return EVP_sha256();
    if (name == "sha384") return EVP_sha384();
    if (name == "sha3_256") return EVP_sha3_256();
    if (name == "sha3_384") return EVP_sha3_384();
    if (name == "md5") return EVP_md5();
    return nullptr;
}

std::vector<std::byte> hmac(const EVP_MD* digest, std::span<const std::byte> key, std::span<const std::byte> message) {
    // OpenSSL reads a null key as "reuse the previous key"; an empty key needs a valid pointer.
    static const unsigned char empty_key = 0;
    const auto* key_data = key.empty() ? &empty_key : reinterpret_cast<const unsigned char*>(key.data());
    std::vector<std::byte> out(EVP_MAX_MD_SIZE);
    unsigned int length = 0;
    if (key.size() > static_cast<std::size_t>(INT_MAX) ||
        ::HMAC(digest, key_data, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
               message.size(), reinterpret_cast<unsigned char*>(out.data()), &length) == nullptr)
        throw AuthenticationError("HMAC computation failed (OpenSSL)");
    out.resize(length);
    return out;
}

// A message's digest name and the part after the "{name}" prefix; an empty name for the legacy
// forms (a 20-byte challenge, a 16-byte answer), which are MD5. nullopt when neither.
struct DigestAndPayload {
    std::string name;
    std::span<const std::byte> payload;
};
std::optional<DigestAndPayload> split_digest(std::span<const std::byte> message) {
    if (message.size() == kLegacyChallengeSize || message.size() == kMd5Size) return DigestAndPayload{"", message};
    if (message.empty() || message[0] != std::byte{'{'}) return std::nullopt;
    const std::size_t search_end = std::min(message.size(), kMaxDigestNameSize + 2);
    for (std::size_t i = 1; i < search_end; ++i) {
        if (message[i] != std::byte{'}'}) continue;
        std::string name(reinterpret_cast<const char*>(message.data()) + 1, i - 1);
        if (digest_by_name(name) == nullptr) return std::nullopt;
        return DigestAndPayload{std::move(name), message.subspan(i + 1)};
    }
    return std::nullopt;
}

void fill_random(std::span<std::byte> out) {
    std::size_t filled = 0;
    while (filled < out.size()) {
        const ssize_t n = ::getrandom(out.data() + filled, out.size() - filled, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("getrandom", errno);
        }
        filled += static_cast<std::size_t>(n);
    }
}

const char* const kLegacyRefused =
    "the peer uses HMAC-MD5, the legacy digest of Python 3.11 and earlier, which is refused unless legacy_md5 "
    "is enabled";

}  // namespace

Handshake::Handshake(HandshakeRole role, std::span<const std::byte> authkey, bool legacy_md5)
    : Handshake(role, authkey, legacy_md5, [] {
          std::array<std::byte, kChallengeRandomSize> random;
          fill_random(random);
          return random;
      }()) {}

Handshake::Handshake(HandshakeRole role, std::span<const std::byte> authkey, bool legacy_md5,
                     std::span<const std::byte, kChallengeRandomSize> challenge_random)
    : role_(role), key_(authkey.begin(), authkey.end()), legacy_md5_(legacy_md5) {
    const auto prefix = bytes_of("{sha256}");
    our_challenge_.resize(prefix.size() + challenge_random.size());
    std::copy(challenge_random.begin(), challenge_random.end(),
              std::copy(prefix.begin(), prefix.end(), our_challenge_.begin()));
    if (role == HandshakeRole::server)
        plan_ = {Step::send_challenge, Step::read_response, Step::read_peer_challenge, Step::read_welcome};
    else
        plan_ = {Step::read_peer_challenge, Step::read_welcome, Step::send_challenge, Step::read_response};
    next_step();
}

void Handshake::next_step() {
    for (;;) {
        if (plan_next_ == plan_.size()) {
            step_ = Step::done;
            return;
        }
        step_ = plan_[plan_next_++];
        if (step_ != Step::send_challenge) break;
        std::vector<std::byte> message(bytes_of(kChallenge).begin(), bytes_of(kChallenge).end());
        message.insert(message.end(), our_challenge_.begin(), our_challenge_.end());
        queue_message(message);
    }
    part_ = FramePart::first_word;
    header_filled_ = 0;
    body_.clear();
}

void Handshake::consume_output(std::size_t count) noexcept {
    output_sent_ += std::min(count, output_.size() - output_sent_);
    if (output_sent_ == output_.size()) {
        output_.clear();
        output_sent_ = 0;
    }
}

std::size_t Handshake::wanted() const noexcept {
    if (step_ == Step::done || step_ == Step::failed) return 0;
    switch (part_) {
        case FramePart::first_word: return kShortHeaderSize - header_filled_;
        case FramePart::long_length: return kShortHeaderSize + kLongLengthSize - header_filled_;
        case FramePart::body: return body_length_ - body_.size();
    }
    return 0;
}

void Handshake::feed(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
        const std::size_t want = wanted();
        if (want == 0) fail("handshake: the peer sent more than the handshake");
        const std::size_t take = std::min(want, bytes.size());
        const std::span<const std::byte> chunk = bytes.first(take);
        bytes = bytes.subspan(take);
        if (part_ == FramePart::body) {
            body_.insert(body_.end(), chunk.begin(), chunk.end());
        } else {
            std::copy(chunk.begin(), chunk.end(), header_.begin() + static_cast<std::ptrdiff_t>(header_filled_));
            header_filled_ += take;
        }
        if (wanted() > 0) continue;
        std::uint64_t length = 0;
        if (part_ == FramePart::first_word) {
            const FirstWord first = decode_first_word(std::span<const std::byte, 4>(header_.data(), 4));
            if (std::holds_alternative<LongFormFollows>(first)) {
                part_ = FramePart::long_length;
                continue;
            }
            if (const auto* negative = std::get_if<NegativeLength>(&first))
                fail(fmt::format("handshake: invalid message length {}", negative->value));
            length = std::get<ShortLength>(first).length;
        } else if (part_ == FramePart::long_length) {
            length = decode_long_length(std::span<const std::byte, 8>(header_.data() + kShortHeaderSize, 8));
        }
        if (part_ != FramePart::body) {
            if (length > kMaxHandshakeMessageSize)
                fail(fmt::format("handshake: bad message length: {} bytes announced, at most {} are accepted "
                                 "before authentication",
                                 length, kMaxHandshakeMessageSize));
            part_ = FramePart::body;
            body_length_ = static_cast<std::size_t>(length);
            if (body_length_ > 0) continue;
        }
        handle_message();
    }
}

void Handshake::handle_message() {
    const std::vector<std::byte> message = std::move(body_);
    body_.clear();
    switch (step_) {
        case Step::read_response: verify_response(message); break;
        case Step::read_peer_challenge: answer_challenge(message); break;
        case Step::read_welcome: check_welcome(message); break;
        default: fail("handshake: unexpected message");
    }
    next_step();
}

void Handshake::verify_response(std::span<const std::byte> response) {
    std::string why;
    const std::optional<DigestAndPayload> answer = split_digest(response);
    if (!answer) {
        why = "unsupported message length, missing digest prefix, or unsupported digest";
    } else {
        const std::string name = answer->name.empty() ? "md5" : answer->name;
        if (name == "md5" && !legacy_md5_) {
            why = kLegacyRefused;
        } else {
            const std::vector<std::byte> expected = hmac(digest_by_name(name), key_, our_challenge_);
            if (expected.size() != answer->payload.size()) {
                why = fmt::format("expected '{}' of length {} got {}", name, expected.size(), answer->payload.size());
            } else if (CRYPTO_memcmp(expected.data(), answer->payload.data(), expected.size()) != 0) {
                why = "digest received was wrong";
            }
        }
    }
    if (!why.empty()) {
        queue_message(bytes_of(kFailure));
        fail(why);
    }
    queue_message(bytes_of(kWelcome));
}

void Handshake::answer_challenge(std::span<const std::byte> message) {
    if (!starts_with(message, kChallenge)) fail("Protocol error, expected challenge");
    const std::span<const std::byte> challenge = message.subspan(kChallenge.size());
    if (challenge.size() < kLegacyChallengeSize)
        fail(fmt::format("challenge too short: {} bytes", challenge.size()));
    const std::optional<DigestAndPayload> asked = split_digest(challenge);
    if (!asked) fail("unsupported message length, missing digest prefix, or unsupported digest");
    const std::string name = asked->name.empty() ? "md5" : asked->name;
    if (name == "md5" && !legacy_md5_) fail(kLegacyRefused);
    // The MAC covers the whole challenge, digest name included, so that it cannot be downgraded.
    const std::vector<std::byte> mac = hmac(digest_by_name(name), key_, challenge);
    if (asked->name.empty()) {
        queue_message(mac);  // Python 3.11's answer: the raw HMAC-MD5
        return;
    }
    std::vector<std::byte> answer;
    const std::string prefix = "{" + name + "}";
    answer.insert(answer.end(), bytes_of(prefix).begin(), bytes_of(prefix).end());
    answer.insert(answer.end(), mac.begin(), mac.end());
    queue_message(answer);
}

void Handshake::check_welcome(std::span<const std::byte> message) {
    if (!equals(message, kWelcome)) fail("digest sent was rejected");
}

void Handshake::queue_message(std::span<const std::byte> message) {
    const FrameHeader header = encode_frame_header(message.size());
    output_.insert(output_.end(), header.view().begin(), header.view().end());
    output_.insert(output_.end(), message.begin(), message.end());
}

void Handshake::fail(const std::string& why) {
    step_ = Step::failed;
    throw AuthenticationError(why);
}

}  // namespace mproc::transport
