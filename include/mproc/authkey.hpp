#pragma once
// AuthKey: the shared secret that authenticates connections between mproc processes
// (Python: Process.authkey, an AuthenticationString).
//
// The main process gets 32 bytes from the kernel's secure random source the first time the key is
// asked for; children inherit their parent's key. Comparison runs in constant time so that a peer
// cannot learn a key byte by byte from timing.
//
// An AuthKey is Encodable (codec.hpp): it can be given to a Process under any start method, or
// sent through a Queue or a Connection, as Python lets an authkey (bytes) travel. Its bytes travel
// in the clear, as Python's do: send it only over channels you trust (a child's start request, a
// pipe between your own processes).
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace mproc {

class AuthKey {
public:
    AuthKey() = default;
    explicit AuthKey(std::string_view bytes);
    explicit AuthKey(std::span<const std::byte> bytes);

    // `size` bytes from getrandom(2).
    static AuthKey random(std::size_t size = 32);

    std::span<const std::byte> bytes() const noexcept { return bytes_; }
    std::size_t size() const noexcept { return bytes_.size(); }
    bool empty() const noexcept { return bytes_.empty(); }

    friend bool operator==(const AuthKey& a, const AuthKey& b) noexcept;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(bytes_);
    }

private:
    std::vector<std::byte> bytes_;
};

}  // namespace mproc
