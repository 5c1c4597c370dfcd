// A C++ process and a Python process talking through Listener/Client.
//
// The C++ side listens on a private AF_UNIX socket with an authkey and starts the Python side
// (connection_python_peer.py), which connects with multiprocessing.connection.Client. They
// exchange messages with send_bytes/recv_bytes, the part of the connection protocol both
// languages share: Python sends lines of text, C++ answers with word counts.
//
//   connection_python_peer [--python PYTHON] [--legacy-md5]
//
// The authkey reaches the Python process through its environment, never its command line,
// which any user can read in /proc. Python 3.11 and earlier only speak the HMAC-MD5 challenge:
// pass --legacy-md5 with such a python (python3 --version), or the challenge fails on both sides
// with "digest sent was rejected" / "the peer uses HMAC-MD5...".
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <mproc/mproc.hpp>

namespace {

std::string text(const std::vector<std::byte>& data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::string hex(std::span<const std::byte> bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::byte b : bytes) {
        out += digits[static_cast<unsigned>(b) >> 4];
        out += digits[static_cast<unsigned>(b) & 15];
    }
    return out;
}

std::size_t count_words(const std::string& line) {
    std::istringstream words(line);
    std::size_t count = 0;
    for (std::string word; words >> word;) ++count;
    return count;
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::string python = MPROC_EXAMPLE_PYTHON;
    bool legacy_md5 = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--python") == 0 && i + 1 < argc) python = argv[++i];
        else if (std::strcmp(argv[i], "--legacy-md5") == 0) legacy_md5 = true;
        else {
            std::fprintf(stderr, "usage: %s [--python PYTHON] [--legacy-md5]\n", argv[0]);
            return 2;
        }
    }

    const mproc::AuthKey key = mproc::AuthKey::random();
    mproc::Listener listener({.authkey = key, .legacy_md5 = legacy_md5});
    const std::string address = std::get<mproc::UnixAddress>(listener.address()).path;

    // The Python side, as a child process that becomes the interpreter: forked whatever the
    // default start method, since it replaces itself with python at once.
    mproc::Process python_side({.name = "python-peer", .start_method = mproc::StartMethod::fork}, [&] {
        ::setenv("MPROC_EXAMPLE_AUTHKEY", hex(key.bytes()).c_str(), 1);
        const char* script = MPROC_EXAMPLE_PYTHON_SCRIPT;
        ::execlp(python.c_str(), python.c_str(), script, address.c_str(), static_cast<char*>(nullptr));
        std::perror(("exec " + python).c_str());
        mproc::exit(127);
    });
    python_side.start();

    try {
        mproc::Connection conn = listener.accept();
        std::printf("C++: accepted an authenticated connection (%s)\n", legacy_md5 ? "HMAC-MD5" : "HMAC-SHA256");
        for (;;) {
            const std::string line = text(conn.recv_bytes());
            if (line == "bye") {
                conn.send_bytes("bye");
                break;
            }
            std::printf("C++: received \"%s\"\n", line.c_str());
            conn.send_bytes(std::to_string(count_words(line)) + " words");
        }
    } catch (const mproc::AuthenticationError& e) {
        std::printf("C++: the Python side failed the challenge: %s\n", e.what());
    }
    std::fflush(stdout);
    python_side.join();
    std::printf("C++: the Python side exited with code %d\n", *python_side.exitcode());
    return *python_side.exitcode();
}
