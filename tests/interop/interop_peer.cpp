// The C++ side of the interoperability tests (interop_test.py drives it against Python's
// multiprocessing.connection). One program, two roles:
//
//   connection_interop_peer listen unix|tcp [--legacy-md5] [--accept N]
//       Listens, prints "ADDRESS unix <path>" or "ADDRESS tcp <host> <port>", then serves N
//       connections (default 1) with the echo protocol below. A peer that fails the challenge
//       prints "ERROR AuthenticationError: <what>" and counts as served.
//   connection_interop_peer connect unix <path> | tcp <host> <port> [--legacy-md5]
//       Connects, runs the client side of the echo protocol, prints "OK".
//
// The authkey comes from the environment variable MPROC_INTEROP_AUTHKEY (hex), never from the
// command line, where other users could read it; without it there is no challenge.
//
// Echo protocol: the client sends messages with send_bytes; the server answers each with
// "echo:" + the message, until the client sends "bye", answered with "bye". The client sends an
// empty message, a short one, one of 70,000 bytes and one of 1 MiB + 1 (patterned), and checks
// every answer.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "mproc/connection.hpp"
#include "mproc/process.hpp"

namespace {

std::optional<mproc::AuthKey> authkey_from_environment() {
    const char* hex = std::getenv("MPROC_INTEROP_AUTHKEY");
    if (hex == nullptr) return std::nullopt;
    std::string bytes;
    for (std::size_t i = 0; hex[i] != '\0' && hex[i + 1] != '\0'; i += 2)
        bytes.push_back(static_cast<char>(std::stoi(std::string(hex + i, 2), nullptr, 16)));
    return mproc::AuthKey(bytes);
}

std::string text(const std::vector<std::byte>& data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::string patterned(std::size_t size) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

void serve(mproc::Connection& connection) {
    for (;;) {
        const std::string message = text(connection.recv_bytes());
        if (message == "bye") {
            connection.send_bytes("bye");
            return;
        }
        connection.send_bytes("echo:" + message);
    }
}

int listen(int argc, char** argv) {
    mproc::ListenerOptions options;
    options.family = std::strcmp(argv[2], "tcp") == 0 ? mproc::Family::af_inet : mproc::Family::af_unix;
    options.authkey = authkey_from_environment();
    options.allow_unauthenticated_tcp = true;  // the tests choose; this program serves either way
    int connections = 1;
    for (int i = 3; i < argc; ++i) {
        if (std::strcmp(argv[i], "--legacy-md5") == 0) options.legacy_md5 = true;
        if (std::strcmp(argv[i], "--accept") == 0 && i + 1 < argc) connections = std::atoi(argv[++i]);
    }
    mproc::Listener listener(options);
    if (const auto* unix_address = std::get_if<mproc::UnixAddress>(&listener.address())) {
        std::printf("ADDRESS unix %s\n", unix_address->path.c_str());
    } else {
        const auto& tcp = std::get<mproc::TcpAddress>(listener.address());
        std::printf("ADDRESS tcp %s %u\n", tcp.host.c_str(), tcp.port);
    }
    std::fflush(stdout);
    for (int served = 0; served < connections; ++served) {
        try {
            mproc::Connection connection = listener.accept();
            serve(connection);
            std::printf("SERVED\n");
        } catch (const mproc::AuthenticationError& e) {
            std::printf("ERROR AuthenticationError: %s\n", e.what());
        }
        std::fflush(stdout);
    }
    return 0;
}

int connect(int argc, char** argv) {
    mproc::Address address;
    int next = 3;
    if (std::strcmp(argv[2], "tcp") == 0) {
        address = mproc::TcpAddress{argv[3], static_cast<std::uint16_t>(std::atoi(argv[4]))};
        next = 5;
    } else {
        address = mproc::UnixAddress(argv[3]);
        next = 4;
    }
    mproc::ClientOptions options{.authkey = authkey_from_environment(), .handshake_timeout = std::chrono::seconds(20)};
    for (int i = next; i < argc; ++i)
        if (std::strcmp(argv[i], "--legacy-md5") == 0) options.legacy_md5 = true;
    try {
        mproc::Connection connection = mproc::Client(address, options);
        for (const std::string& message : {std::string(), std::string("hello from C++"), patterned(70000),
                                           patterned((1 << 20) + 1)}) {
            connection.send_bytes(message);
            const std::string answer = text(connection.recv_bytes());
            if (answer != "echo:" + message) {
                std::printf("MISMATCH for a message of %zu bytes: %zu bytes back\n", message.size(), answer.size());
                return 1;
            }
        }
        connection.send_bytes("bye");
        if (text(connection.recv_bytes()) != "bye") return 1;
    } catch (const mproc::AuthenticationError& e) {
        std::printf("ERROR AuthenticationError: %s\n", e.what());
        return 2;
    }
    std::printf("OK\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    if (argc >= 3 && std::strcmp(argv[1], "listen") == 0) return listen(argc, argv);
    if (argc >= 4 && std::strcmp(argv[1], "connect") == 0) return connect(argc, argv);
    std::fprintf(stderr,
                 "usage: %s listen unix|tcp [--legacy-md5] [--accept N]\n"
                 "       %s connect unix PATH | tcp HOST PORT [--legacy-md5]\n",
                 argv[0], argv[0]);
    return 64;
}
