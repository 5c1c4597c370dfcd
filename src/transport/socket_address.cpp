#include "transport/socket_address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "mproc/errors.hpp"
#include "transport/fd_io.hpp"

namespace mproc::transport {

int socket_family(Family family) noexcept { return family == Family::af_unix ? AF_UNIX : AF_INET; }

bool is_abstract(const Address& address) noexcept {
    const auto* unix_address = std::get_if<UnixAddress>(&address);
    return unix_address != nullptr && !unix_address->path.empty() && unix_address->path[0] == '\0';
}

SocketAddress to_socket_address(const Address& address) {
    SocketAddress result;
    if (const auto* unix_address = std::get_if<UnixAddress>(&address)) {
        const std::string& path = unix_address->path;
        if (path.empty()) throw UsageError("an AF_UNIX address needs a path");
        auto* sun = reinterpret_cast<sockaddr_un*>(&result.storage);
        sun->sun_family = AF_UNIX;
        // A filesystem path needs its terminating NUL inside sun_path; an abstract name does not.
        const bool abstract = path[0] == '\0';
        if (path.size() + (abstract ? 0 : 1) > sizeof(sun->sun_path))
            throw OSError(fmt::format("AF_UNIX path of {} bytes (at most {})", path.size(), sizeof(sun->sun_path) - 1),
                          ENAMETOOLONG);
        std::memcpy(sun->sun_path, path.data(), path.size());
        result.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
        return result;
    }
    const auto& tcp = std::get<TcpAddress>(address);
    auto* sin = reinterpret_cast<sockaddr_in*>(&result.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(tcp.port);
    result.length = sizeof(sockaddr_in);
    if (tcp.host.empty()) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        return result;
    }
    if (::inet_pton(AF_INET, tcp.host.c_str(), &sin->sin_addr) == 1) return result;
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int status = ::getaddrinfo(tcp.host.c_str(), nullptr, &hints, &found);
    if (status != 0 || found == nullptr)
        throw OSError(fmt::format("getaddrinfo({}): {}", tcp.host, ::gai_strerror(status)), status == EAI_SYSTEM ? errno : EINVAL);
    sin->sin_addr = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
    ::freeaddrinfo(found);
    return result;
}

Address from_socket_address(const SocketAddress& address, Family family) {
    if (family == Family::af_unix) {
        const auto* sun = reinterpret_cast<const sockaddr_un*>(&address.storage);
        const std::size_t header = offsetof(sockaddr_un, sun_path);
        if (address.length <= header) return UnixAddress(std::string());
        std::size_t size = address.length - header;
        // Filesystem paths come with their terminating NUL; abstract names do not have one.
        if (sun->sun_path[0] != '\0') size = ::strnlen(sun->sun_path, size);
        return UnixAddress(std::string(sun->sun_path, size));
    }
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&address.storage);
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    return TcpAddress{text, ntohs(sin->sin_port)};
}

namespace {

// The private directory arbitrary AF_UNIX addresses live in (Python: util.get_temp_dir), made
// on first use in each process and removed when the process that made it exits normally.
struct PrivateTempDir {
    std::mutex mutex;
    std::string path;
    pid_t owner = 0;
};

PrivateTempDir& private_temp_dir() {
    static auto* dir = new PrivateTempDir();  // never destroyed: used by the exit handler
    return *dir;
}

void remove_private_temp_dir() {
    PrivateTempDir& dir = private_temp_dir();
    if (dir.path.empty() || dir.owner != ::getpid()) return;
    ::rmdir(dir.path.c_str());  // only when empty: listeners remove their own sockets
}

std::string temp_dir_path() {
    PrivateTempDir& dir = private_temp_dir();
    std::lock_guard lock(dir.mutex);
    if (!dir.path.empty() && dir.owner == ::getpid()) return dir.path;
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/mproc-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw OSError("mkdtemp(" + pattern + ")", errno);
    const bool first = dir.path.empty();
    dir.path = pattern;
    dir.owner = ::getpid();
    if (first) std::atexit(remove_private_temp_dir);
    return dir.path;
}

}  // namespace

}  // namespace mproc::transport

namespace mproc::connection {

Family address_type(const Address& address) noexcept {
    return std::holds_alternative<UnixAddress>(address) ? Family::af_unix : Family::af_inet;
}

Address arbitrary_address(Family family) {
    if (family == Family::af_inet) return TcpAddress{"127.0.0.1", 0};
    unsigned char random[8];
    std::size_t filled = 0;
    while (filled < sizeof random) {
        const ssize_t n = ::getrandom(random + filled, sizeof random - filled, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("getrandom", errno);
        }
        filled += static_cast<std::size_t>(n);
    }
    std::string name = transport::temp_dir_path() + "/listener-";
    for (unsigned char b : random) name += fmt::format("{:02x}", b);
    return UnixAddress(std::move(name));
}

std::string to_string(const Address& address) {
    if (const auto* unix_address = std::get_if<UnixAddress>(&address)) {
        const std::string& path = unix_address->path;
        if (path.empty() || path[0] != '\0') return path;
        std::string shown(path);
        shown[0] = '@';  // how ss(8) and /proc/net/unix show abstract names
        return shown;
    }
    const auto& tcp = std::get<TcpAddress>(address);
    return fmt::format("{}:{}", tcp.host, tcp.port);
}

}  // namespace mproc::connection
