// Figures for Pipe/Connection, against the system calls written directly: a 1-byte ping-pong
// over pipe(2) for latency, a socketpair stream of the same 1 MiB messages for throughput.
// The peer is a child process started before the timed part and joined after it.
//
// Beside "mproc" and "raw", each figure has variants that say where the difference comes from
// (the report charts them; docs/benchmarks.md discusses them):
//   pipe.pingpong        mproc.simplex   the same typed ping-pong over two Pipe(false), pipe(2) like raw
//                        raw.socketpair  the 1-byte ping-pong over a socketpair, what a duplex Pipe is
//   pipe.throughput.1mib mproc.recv_bytes  the child receives with recv_bytes(), a new vector per
//                                          message, instead of recv_bytes_into() a reused buffer
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <vector>

#include "harness.hpp"
#include "ipc_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/process.hpp"

namespace {

constexpr std::size_t kMebibyte = std::size_t{1} << 20;

using bench::ipc::fork_child;
using bench::ipc::read_exactly;
using bench::ipc::reap;
using bench::ipc::write_exactly;

const bench::Register ping_pong{{
    .name = "pipe.pingpong",
    .unit = bench::micros_per("round_trip"),
    .description = "send(int) to a child and recv<int> its reply through a duplex Pipe; raw: 1 byte each way over two pipe(2)s",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             auto [parent_end, child_end] = mproc::Pipe();
             mproc::Process child([&child_end, iterations] {
                 for (std::size_t i = 0; i < iterations; ++i) child_end.send(child_end.recv<int>() + 1);
             });
             child.start();
             int value = 0;
             const bench::Seconds took = bench::time_loop(iterations, [&] {
                 parent_end.send(value);
                 const int reply = parent_end.recv<int>();
                 bench::require(reply == value + 1, "wrong reply");
                 value = reply;
             });
             child.join();
             bench::require(child.exitcode() == 0, "the child failed");
             return took;
         }},
        {"mproc.simplex", [](std::size_t iterations) {
             auto [from_child, to_parent] = mproc::Pipe(false);
             auto [from_parent, to_child] = mproc::Pipe(false);
             mproc::Process child([&from_parent, &to_parent, iterations] {
                 for (std::size_t i = 0; i < iterations; ++i) to_parent.send(from_parent.recv<int>() + 1);
             });
             child.start();
             int value = 0;
             const bench::Seconds took = bench::time_loop(iterations, [&] {
                 to_child.send(value);
                 const int reply = from_child.recv<int>();
                 bench::require(reply == value + 1, "wrong reply");
                 value = reply;
             });
             child.join();
             bench::require(child.exitcode() == 0, "the child failed");
             return took;
         }},
        {"raw.socketpair", [](std::size_t iterations) {
             int fds[2];
             bench::require(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair failed");
             const pid_t pid = fork_child([&] {
                 char byte;
                 for (std::size_t i = 0; i < iterations; ++i) {
                     read_exactly(fds[1], &byte, 1);
                     ++byte;
                     write_exactly(fds[1], &byte, 1);
                 }
             });
             char byte = 0;
             const bench::Seconds took = bench::time_loop(iterations, [&] {
                 const char sent = byte;
                 write_exactly(fds[0], &byte, 1);
                 read_exactly(fds[0], &byte, 1);
                 bench::require(byte == static_cast<char>(sent + 1), "wrong reply");
             });
             reap(pid);
             ::close(fds[0]);
             ::close(fds[1]);
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             int to_child[2], to_parent[2];
             bench::require(::pipe(to_child) == 0 && ::pipe(to_parent) == 0, "pipe failed");
             const pid_t pid = fork_child([&] {
                 char byte;
                 for (std::size_t i = 0; i < iterations; ++i) {
                     read_exactly(to_child[0], &byte, 1);
                     ++byte;
                     write_exactly(to_parent[1], &byte, 1);
                 }
             });
             char byte = 0;
             const bench::Seconds took = bench::time_loop(iterations, [&] {
                 const char sent = byte;
                 write_exactly(to_child[1], &byte, 1);
                 read_exactly(to_parent[0], &byte, 1);
                 bench::require(byte == static_cast<char>(sent + 1), "wrong reply");
             });
             reap(pid);
             for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);
             return took;
         }},
    },
}, bench::LoadedTwin{.impls = {"mproc", "raw"}}};

// The child receives `iterations` messages of 1 MiB and then acknowledges them all; the time runs
// from the first send to the acknowledgement, so it covers every byte arriving in the child.
// "mproc" receives into a reused buffer (recv_bytes_into), the same work as raw's read(2) loop;
// "mproc.recv_bytes" allocates each message, as recv_bytes() returns a new vector.
bench::BatchFn mproc_stream(bool into_reused_buffer) {
    return [into_reused_buffer](std::size_t iterations) {
        auto [parent_end, child_end] = mproc::Pipe();
        mproc::Process child([&child_end, iterations, into_reused_buffer] {
            std::size_t received = 0;
            std::vector<std::byte> buffer(kMebibyte);
            for (std::size_t i = 0; i < iterations; ++i)
                received += into_reused_buffer ? child_end.recv_bytes_into(buffer) : child_end.recv_bytes().size();
            child_end.send(received);
        });
        child.start();
        const std::vector<std::byte> message(kMebibyte, std::byte{0x5a});
        const bench::Seconds took = bench::time_loop(1, [&] {
            for (std::size_t i = 0; i < iterations; ++i) parent_end.send_bytes(message);
            bench::require(parent_end.recv<std::size_t>() == iterations * kMebibyte, "bytes lost");
        });
        child.join();
        bench::require(child.exitcode() == 0, "the child failed");
        return took;
    };
}

const bench::Register throughput{{
    .name = "pipe.throughput.1mib",
    .unit = bench::megabytes_per_second(static_cast<double>(kMebibyte)),
    .description = "send_bytes of 1 MiB messages to a child that recv_bytes_into a reused buffer, duplex Pipe; raw: write/read of the same bytes over a socketpair",
    .impls = {
        {"mproc", mproc_stream(true)},
        {"mproc.recv_bytes", mproc_stream(false)},
        {"raw", [](std::size_t iterations) {
             int fds[2];
             bench::require(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair failed");
             const pid_t pid = fork_child([&] {
                 std::vector<std::byte> buffer(kMebibyte);
                 std::size_t received = 0;
                 for (std::size_t i = 0; i < iterations; ++i) {
                     read_exactly(fds[1], buffer.data(), buffer.size());
                     received += buffer.size();
                 }
                 write_exactly(fds[1], &received, sizeof received);
             });
             const std::vector<std::byte> message(kMebibyte, std::byte{0x5a});
             const bench::Seconds took = bench::time_loop(1, [&] {
                 for (std::size_t i = 0; i < iterations; ++i) write_exactly(fds[0], message.data(), message.size());
                 std::size_t acknowledged = 0;
                 read_exactly(fds[0], &acknowledged, sizeof acknowledged);
                 bench::require(acknowledged == iterations * kMebibyte, "bytes lost");
             });
             reap(pid);
             ::close(fds[0]);
             ::close(fds[1]);
             return took;
         }},
    },
}};

}  // namespace
