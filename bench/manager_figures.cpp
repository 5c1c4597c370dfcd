// Figures for managers: one dict operation from a child (and from the parent), against a raw
// 1-byte round trip over a Unix socket to another process, which is the least any call into a
// server process costs; and the start of a manager up to its first proxy, against a raw server
// process that binds a Unix socket and answers one connection.
//
//   manager.dict.op   mproc         d[k] = v / d.get(k), alternately, from a forked child
//                     mproc.parent  the same from the process that started the manager
//                     raw           write/read of 1 byte over a Unix socketpair to a forked echo process
//   manager.concurrent mproc        4 client processes, each doing d[k] = v / d.get(k) alternately
//                                   on one managed dict; total operations per second
//                     raw           4 client processes making 1-byte round trips, each over its own
//                                   socketpair to an echo thread of one server process
//   manager.start     mproc         Manager() + the first dict() (shutdown outside the time)
//                     raw           fork a process that binds and listens on a Unix socket, connect,
//                                   one 1-byte round trip
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/managers.hpp"
#include "mproc/process.hpp"

namespace {

void transfer(int fd, char* byte, bool sending) {
    for (;;) {
        const ssize_t n = sending ? ::write(fd, byte, 1) : ::read(fd, byte, 1);
        if (n == 1) return;
        if (n < 0 && errno == EINTR) continue;
        bench::require(false, sending ? "write failed" : "read failed or end of file");
    }
}

void reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

// The dict operations a child times itself (its own clock, no start-up in the figure).
bench::Seconds dict_ops(const mproc::DictProxy<int, int>& d, std::size_t iterations) {
    d[0] = 0;  // connects: not part of an operation's cost
    return bench::time_loop(iterations, [&, i = 0]() mutable {
        if (++i % 2 == 0) {
            d[i % 16] = i;
        } else {
            bench::keep(d.get(i % 16));
        }
    });
}

const bench::Register dict_op{{
    .name = "manager.dict.op",
    .unit = bench::micros_per("op"),
    .description = "a managed dict's set or get, from a child process; raw: a 1-byte round trip over a Unix socketpair",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             static mproc::SyncManager manager = mproc::Manager();
             static mproc::DictProxy<int, int> d = manager.dict<int, int>();
             auto [from_child, to_parent] = mproc::Pipe();
             mproc::Process child([&to_parent, iterations] { to_parent.send(dict_ops(d, iterations).count()); });
             child.start();
             const double took = from_child.recv<double>();
             child.join();
             bench::require(child.exitcode() == 0, "the child failed");
             return bench::Seconds(took);
         }},
        {"mproc.parent", [](std::size_t iterations) {
             static mproc::SyncManager manager = mproc::Manager();
             static mproc::DictProxy<int, int> d = manager.dict<int, int>();
             return dict_ops(d, iterations);
         }},
        {"raw", [](std::size_t iterations) {
             int fds[2];
             bench::require(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair failed");
             const pid_t pid = ::fork();
             bench::require(pid >= 0, "fork failed");
             if (pid == 0) {
                 char byte;
                 for (std::size_t i = 0; i < iterations; ++i) {
                     transfer(fds[1], &byte, false);
                     transfer(fds[1], &byte, true);
                 }
                 ::_exit(0);
             }
             char byte = 1;
             const bench::Seconds took = bench::time_loop(iterations, [&] {
                 transfer(fds[0], &byte, true);
                 transfer(fds[0], &byte, false);
             });
             reap(pid);
             ::close(fds[0]);
             ::close(fds[1]);
             return took;
         }},
    },
}};

// 4 children each run `iterations / 4` dict operations (the first's share takes the remainder)
// behind a start line; the time from the start line until the last one is done.
constexpr int kConcurrentClients = 4;

const bench::Register concurrent{{
    .name = "manager.concurrent",
    .unit = bench::per_second("op"),
    .description = "4 client processes doing d[k] = v / d.get(k) alternately on one managed dict, total ops/s; "
                   "raw: 4 clients making 1-byte round trips to echo threads of one server process",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             static mproc::SyncManager manager = mproc::Manager();
             static mproc::DictProxy<int, int> d = manager.dict<int, int>();
             auto [from_children, to_parent] = mproc::Pipe();
             auto [from_parent, to_children] = mproc::Pipe();
             std::vector<mproc::Process> children;
             for (int c = 0; c < kConcurrentClients; ++c) {
                 const std::size_t share = iterations / kConcurrentClients +
                                           (c == 0 ? iterations % kConcurrentClients : 0);
                 children.emplace_back([&, share] {
                     d[0] = 0;  // connects
                     to_parent.send(true);
                     from_parent.recv<bool>();  // the start line
                     dict_ops(d, share);
                     to_parent.send(true);
                 });
                 children.back().start();
             }
             for (int c = 0; c < kConcurrentClients; ++c) from_children.recv<bool>();
             const auto begin = std::chrono::steady_clock::now();
             for (int c = 0; c < kConcurrentClients; ++c) to_children.send(true);
             for (int c = 0; c < kConcurrentClients; ++c) from_children.recv<bool>();
             const bench::Seconds took = std::chrono::steady_clock::now() - begin;
             for (auto& child : children) {
                 child.join();
                 bench::require(child.exitcode() == 0, "a child failed");
             }
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             // One server process with an echo thread per client, as the manager's server has a
             // thread per connection; each client makes 1-byte round trips over its own socketpair.
             int ready[2];
             bench::require(::pipe(ready) == 0, "pipe failed");
             std::vector<std::array<int, 2>> pairs(kConcurrentClients);
             for (auto& pair : pairs)
                 bench::require(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair.data()) == 0, "socketpair failed");
             const pid_t server = ::fork();
             bench::require(server >= 0, "fork failed");
             if (server == 0) {
                 std::vector<std::thread> echoes;
                 for (auto& pair : pairs)
                     echoes.emplace_back([fd = pair[1]] {
                         char byte;
                         for (;;) {
                             const ssize_t n = ::read(fd, &byte, 1);
                             if (n == 0 || (n < 0 && errno != EINTR)) return;
                             if (n == 1) transfer(fd, &byte, true);
                         }
                     });
                 for (auto& pair : pairs) ::close(pair[0]);
                 for (auto& echo : echoes) echo.join();
                 ::_exit(0);
             }
             for (auto& pair : pairs) ::close(pair[1]);
             std::vector<pid_t> clients;
             for (int c = 0; c < kConcurrentClients; ++c) {
                 const std::size_t share = iterations / kConcurrentClients +
                                           (c == 0 ? iterations % kConcurrentClients : 0);
                 const pid_t pid = ::fork();
                 bench::require(pid >= 0, "fork failed");
                 if (pid == 0) {
                     char byte = 1;
                     transfer(ready[0], &byte, false);  // the start line
                     for (std::size_t i = 0; i < share; ++i) {
                         transfer(pairs[static_cast<std::size_t>(c)][0], &byte, true);
                         transfer(pairs[static_cast<std::size_t>(c)][0], &byte, false);
                     }
                     ::_exit(0);
                 }
                 clients.push_back(pid);
             }
             const auto begin = std::chrono::steady_clock::now();
             const char go[kConcurrentClients] = {};
             bench::require(::write(ready[1], go, sizeof go) == static_cast<ssize_t>(sizeof go), "write failed");
             for (const pid_t pid : clients) reap(pid);
             const bench::Seconds took = std::chrono::steady_clock::now() - begin;
             for (auto& pair : pairs) ::close(pair[0]);
             reap(server);
             ::close(ready[0]);
             ::close(ready[1]);
             return took;
         }},
    },
}};

const bench::Register start{{
    .name = "manager.start",
    .unit = bench::millis_per("start"),
    .description = "Manager() + the first dict(); raw: fork a process that listens on a Unix socket, connect, one round trip",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             bench::Seconds total{0};
             for (std::size_t i = 0; i < iterations; ++i) {
                 const auto begin = std::chrono::steady_clock::now();
                 mproc::SyncManager manager = mproc::Manager();
                 auto d = manager.dict<int, int>();
                 total += std::chrono::steady_clock::now() - begin;
                 manager.shutdown();
             }
             return total;
         }},
        {"raw", [](std::size_t iterations) {
             bench::Seconds total{0};
             const std::string path = "/tmp/mproc-bench-raw-" + std::to_string(::getpid());
             for (std::size_t i = 0; i < iterations; ++i) {
                 const auto begin = std::chrono::steady_clock::now();
                 int ready[2];
                 bench::require(::pipe(ready) == 0, "pipe failed");
                 sockaddr_un address{};
                 address.sun_family = AF_UNIX;
                 std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
                 const pid_t pid = ::fork();
                 bench::require(pid >= 0, "fork failed");
                 if (pid == 0) {
                     ::unlink(path.c_str());
                     const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
                     if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
                         ::listen(listener, 16) != 0)
                         ::_exit(1);
                     char byte = 1;
                     transfer(ready[1], &byte, true);
                     const int peer = ::accept(listener, nullptr, nullptr);
                     transfer(peer, &byte, false);
                     transfer(peer, &byte, true);
                     ::_exit(0);
                 }
                 char byte = 0;
                 transfer(ready[0], &byte, false);
                 const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
                 bench::require(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0,
                                "connect failed");
                 transfer(fd, &byte, true);
                 transfer(fd, &byte, false);
                 total += std::chrono::steady_clock::now() - begin;
                 ::close(fd);
                 ::close(ready[0]);
                 ::close(ready[1]);
                 reap(pid);
                 ::unlink(path.c_str());
             }
             return total;
         }},
    },
}};

}  // namespace
