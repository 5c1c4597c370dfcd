#pragma once
// Helpers for the synchronization and shared-memory suites (and any test that waits for a state):
// a watchdog that turns a hang into a failure with a message, leak checks of descriptors and
// /dev/shm, timing, and waits for a state (a condition that holds, a thread blocked in a wait,
// from helpers/thread_state.hpp) instead of sleeps.
#include <dirent.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

#include "helpers/test_helpers.hpp"
#include "helpers/thread_state.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"

namespace mproc::testing {

// Aborts the test binary (with a message naming the test) if it is still alive after `limit`:
// a hang in a primitive becomes a failure instead of a stuck CI job.
class Watchdog {
public:
    explicit Watchdog(std::chrono::seconds limit, std::string what = {}) : what_(std::move(what)) {
        thread_ = std::thread([this, limit] {
            std::unique_lock lock(mutex_);
            started_ = true;
            cv_.notify_all();
            if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
                std::fprintf(stderr, "\nWATCHDOG: %s still running after %lld s; aborting\n", what_.c_str(),
                             static_cast<long long>(limit.count()));
                std::fflush(stderr);
                std::abort();
            }
        });
        // Returns once the thread sleeps in its wait (the mutex is free only then): a test that
        // forks at once must not copy the locks a starting thread takes, which AddressSanitizer's
        // allocator (before LLVM 18) never releases in the child.
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return started_; });
    }
    ~Watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

private:
    std::string what_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool started_ = false;
    bool done_ = false;
    std::thread thread_;
};

// The names in /dev/shm that mproc or its tests make: automatic names (psm_...), shared buffers
// (psb_...), the tests' own (mproc_test_...), and creations in progress (.mproc-new-...). Other
// programs' entries (Python's semaphores, say) come and go on their own and are not counted.
inline std::set<std::string> shm_entries() {
    std::set<std::string> names;
    if (DIR* dir = ::opendir("/dev/shm")) {
        while (dirent* e = ::readdir(dir)) {
            std::string name = e->d_name;
            if (name.rfind("psm_", 0) == 0 || name.rfind("psb_", 0) == 0 || name.rfind("mproc_test_", 0) == 0 ||
                name.rfind(".mproc-new-", 0) == 0)
                names.insert(name);
        }
        ::closedir(dir);
    }
    return names;
}

// The entries of /dev/shm (as shm_entries() counts them) that were not there `before`: what a
// test leaked. Entries that went away meanwhile are fine (a sweep may remove what a crashed
// earlier run left).
inline std::set<std::string> new_shm_entries(const std::set<std::string>& before) {
    std::set<std::string> added;
    for (const auto& name : shm_entries())
        if (!before.count(name)) added.insert(name);
    return added;
}

// The open descriptors of this process and what they are ("7 -> memfd:mproc (deleted)"): shown
// when a test leaks one.
inline std::set<std::string> open_fd_names() {
    std::set<std::string> names;
    if (DIR* dir = ::opendir("/proc/self/fd")) {
        const int own = ::dirfd(dir);
        while (dirent* e = ::readdir(dir)) {
            if (e->d_name[0] == '.' || std::atoi(e->d_name) == own) continue;
            char target[512] = {};
            const std::string link = std::string("/proc/self/fd/") + e->d_name;
            const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
            names.insert(std::string(e->d_name) + " -> " + (n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?"));
        }
        ::closedir(dir);
    }
    return names;
}

inline std::string new_fd_names(const std::set<std::string>& before) {
    std::string added;
    for (const auto& name : open_fd_names())
        if (!before.count(name)) added += "\n  " + name;
    return added;
}

inline bool shm_exists(const std::string& name) { return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

template <class F>
std::chrono::nanoseconds time_of(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::steady_clock::now() - start;
}

// Polls `condition` until it holds, for at most `limit` (generous: a loaded machine may take long
// to schedule the process that makes it true). False if it never held.
template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// The kernel's id of the calling thread (a process's id is its main thread's).
inline pid_t this_thread_id() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// Whether thread `tid` (of this process or of a child) is blocked in a futex wait, as a thread
// waiting on a Lock, Semaphore, Event, Condition, Barrier or Queue is once it sleeps.
inline bool blocked_in_futex(pid_t tid) { return blocked_in(tid, wchan::futex); }

// Runs `action` on a new thread once thread `tid` is blocked (wait_until_blocked with
// `wchan_part`): the way to wake, kill or feed a waiter only once it waits. A failure if it never
// blocks within 30 s; `action` runs then all the same, so that the test does not hang.
template <class F>
std::thread act_once_blocked(pid_t tid, std::string_view wchan_part, F action) {
    return std::thread([tid, part = std::string(wchan_part), action = std::move(action)]() mutable {
        EXPECT_TRUE(wait_until_blocked(tid, part)) << "thread " << tid << " never blocked in \"" << part << "\"";
        action();
    });
}

// A fault test that must leave nothing behind: no running (or, when asked, unreaped) children,
// no new descriptors, no new /dev/shm entries; and that a watchdog ends if it hangs.
class LeakCheckedTest : public ::testing::Test {
protected:
    LeakCheckedTest(const char* what, bool check_zombies)
        : watchdog_(std::chrono::seconds(90), what), check_zombies_(check_zombies) {}
    void SetUp() override {
        fds_ = count_open_fds();
        shm_ = shm_entries();
    }
    void TearDown() override {
        EXPECT_TRUE(mproc::active_children().empty()) << "children left running";
        if (check_zombies_) {
            EXPECT_TRUE(zombie_children().empty()) << "children left unreaped";
        }
        EXPECT_EQ(count_open_fds(), fds_) << "descriptors leaked";
        EXPECT_TRUE(new_shm_entries(shm_).empty()) << "/dev/shm entries leaked";
    }

private:
    Watchdog watchdog_;
    bool check_zombies_;
    int fds_ = 0;
    std::set<std::string> shm_;
};

// A suite run once per start method (TEST_P over StartMethod values): the method is the default
// during each test, and a test must leave no new descriptor or /dev/shm entry; a watchdog ends a
// test that hangs.
class PerStartMethodTest : public ::testing::TestWithParam<StartMethod> {
protected:
    explicit PerStartMethodTest(const char* what) : watchdog_(std::chrono::seconds(90), what) {}
    void SetUp() override {
        set_start_method(std::string(to_string(GetParam())), true);
        // The fork server keeps a descriptor once started: start it before counting.
        {
            Process warm_up([] {});
            warm_up.start();
            warm_up.join();
        }
        fds_ = count_open_fds();
        fd_names_ = open_fd_names();
        shm_ = shm_entries();
    }
    void TearDown() override {
        set_start_method(std::nullopt, true);
        EXPECT_EQ(count_open_fds(), fds_) << "descriptors leaked:" << new_fd_names(fd_names_);
        EXPECT_TRUE(new_shm_entries(shm_).empty()) << "/dev/shm entries leaked";
    }

    template <class F, class... Args>
    static Process started(F target, Args... args) {
        Process p(target, args...);
        p.start();
        return p;
    }
    // Joins `p` (killing it if it runs past `limit`, which fails the test) and returns its exit code.
    static int joined(Process& p, std::chrono::seconds limit = std::chrono::seconds(30)) {
        p.join(limit);
        if (p.is_alive()) {
            p.kill();
            p.join();
            ADD_FAILURE() << "a child did not end in " << limit.count() << " s";
        }
        return p.exitcode().value_or(-1000);
    }

private:
    Watchdog watchdog_;
    int fds_ = 0;
    std::set<std::string> fd_names_;
    std::set<std::string> shm_;
};

inline std::string start_method_name(const ::testing::TestParamInfo<StartMethod>& info) {
    return std::string(to_string(info.param));
}

}  // namespace mproc::testing
