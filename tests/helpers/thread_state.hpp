#pragma once
// What a thread is doing, as /proc tells it: whether it sleeps in the kernel, and in which
// function. Tests use it to wait until a thread (of this process or of another) is blocked in a
// wait before they act on that wait, instead of sleeping and hoping it is. No gtest here: the
// scenario program uses it too.
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mproc::testing {

// Substrings of /proc/<tid>/wchan, the kernel function a sleeping thread waits in.
namespace wchan {
// Any sleep at all (state S), wherever it is.
inline constexpr std::string_view any = "";
// A futex wait: a Lock, Semaphore, Event, Condition, Barrier or Queue of mproc, a std::mutex.
inline constexpr std::string_view futex = "futex";
// poll/ppoll/select (poll_schedule_timeout, do_sys_poll) and epoll (ep_poll): a Connection's
// poll() and timed reads, connection::wait(), accept(), a Process's join() on its sentinel.
inline constexpr std::string_view poll = "poll";
// A blocking read of an AF_UNIX stream socket: a manager proxy waiting for its reply.
inline constexpr std::string_view unix_socket_read = "unix_stream_read";
}  // namespace wchan

// Whether thread `tid` (of this process or of another) is blocked in the kernel: /proc says it
// sleeps (S) and, where the kernel shows the function it sleeps in, that function's name holds
// `wchan_part` (see mproc::testing::wchan). A thread that runs, spins or waits for the CPU is R,
// so this tells "blocked" from "about to block".
inline bool blocked_in(pid_t tid, std::string_view wchan_part) {
    std::ifstream stat("/proc/" + std::to_string(tid) + "/stat");
    const std::string line((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto name_end = line.rfind(')');  // the name, in parentheses, may hold anything
    if (name_end == std::string::npos || name_end + 2 >= line.size() || line[name_end + 2] != 'S') return false;
    if (wchan_part.empty()) return true;
    std::ifstream wchan_file("/proc/" + std::to_string(tid) + "/wchan");
    std::string function;
    std::getline(wchan_file, function);
    if (function.empty() || function == "0") return true;  // hidden by the kernel: the state must do
    return function.find(wchan_part) != std::string::npos;
}

// Waits until blocked_in(tid, wchan_part) holds, polling every 100 µs; false if it never did
// within `limit` (generous: on a loaded machine the thread may take long to get there).
inline bool wait_until_blocked(pid_t tid, std::string_view wchan_part,
                               std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!blocked_in(tid, wchan_part)) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// Waits until thread `tid` is blocked in a futex wait, as a thread waiting on a Lock, Semaphore,
// Event, Condition, Barrier or Queue is once it sleeps; false if it never was within `limit`.
inline bool wait_until_blocked(pid_t tid, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    return wait_until_blocked(tid, wchan::futex, limit);
}

// The threads of this process other than the calling one.
inline std::vector<pid_t> other_threads_of_this_process() {
    const auto self = static_cast<pid_t>(::syscall(SYS_gettid));
    std::vector<pid_t> tids;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        const auto tid = static_cast<pid_t>(std::stoi(entry.path().filename().string()));
        if (tid != self) tids.push_back(tid);
    }
    return tids;
}

// Waits until every other thread of this process sleeps (blocked_in with wchan::any); false if
// one never did within `limit`. A test that forks while a thread of its own (a queue's feeder,
// a pool's handler) is at work calls this first: a fork child inherits the locks such a thread
// holds at that instant, and some allocators (AddressSanitizer's, before LLVM 18 and so in
// GCC 12 to 13) do not reset theirs in the child, which then waits for them forever.
inline bool wait_until_other_threads_sleep(std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    for (const pid_t tid : other_threads_of_this_process())
        if (!wait_until_blocked(tid, wchan::any, limit)) return false;
    return true;
}

}  // namespace mproc::testing
