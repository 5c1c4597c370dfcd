#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "mproc/authkey.hpp"
#include "mproc/errors.hpp"

namespace mproc {

OSError::OSError(const std::string& what, int errno_value)
    : ProcessError(what + ": " + std::strerror(errno_value)), code_(errno_value, std::generic_category()) {}

OSError::OSError(const std::string& message) : ProcessError(message), code_(0, std::generic_category()) {}

AuthKey::AuthKey(std::string_view bytes)
    : bytes_(reinterpret_cast<const std::byte*>(bytes.data()),
             reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size()) {}

AuthKey::AuthKey(std::span<const std::byte> bytes) : bytes_(bytes.begin(), bytes.end()) {}

AuthKey AuthKey::random(std::size_t size) {
    std::vector<std::byte> bytes(size);
    std::size_t filled = 0;
    while (filled < size) {
        ssize_t n = ::getrandom(bytes.data() + filled, size - filled, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("generating an authkey (getrandom)", errno);
        }
        filled += static_cast<std::size_t>(n);
    }
    return AuthKey(std::span<const std::byte>(bytes));
}

bool operator==(const AuthKey& a, const AuthKey& b) noexcept {
    if (a.bytes_.size() != b.bytes_.size()) return false;
    // Constant time in the contents: every byte is looked at whatever the first difference.
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.bytes_.size(); ++i)
        diff |= static_cast<unsigned char>(a.bytes_[i] ^ b.bytes_[i]);
    return diff == 0;
}

}  // namespace mproc
