// Faults of shared memory (spec/faults.md rows 10-13, and CPython issue 82300): users killed
// with SIGKILL, a whole process group killed, a full /dev/shm, a peer that tries to truncate the
// memory of the primitives. Every test checks /dev/shm and the descriptors before and after.
#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;

namespace {

class ShmFaults : public mproc::testing::LeakCheckedTest {
protected:
    ShmFaults() : LeakCheckedTest("a shared memory fault test", false) {}
};

void create_and_wait(std::string name, mproc::Event created) {
    mproc::SharedMemory shm({.name = name, .create = true, .size = 1 << 16});
    shm.buf()[0] = std::byte{1};
    created.set();
    for (;;) ::pause();
}

void attach_and_leave(std::string name, bool killed_inside, mproc::Event attached) {
    mproc::SharedMemory shm({.name = name});
    shm.buf()[1] = std::byte{2};
    attached.set();
    if (killed_inside) {
        for (;;) ::pause();
    }
}  // closes: the child detaches normally

void attach_in_a_loop(std::string name) {
    for (;;) {
        mproc::SharedMemory shm({.name = name});
        shm.buf()[2] = std::byte{3};
    }
}

std::string unique(const char* tag) { return std::string("mproc_test_") + tag + "_" + std::to_string(::getpid()); }

// Starts `target(name, ready)` in a forked child and returns once the child has set `ready`.
template <class F>
mproc::Process started_until_ready(F target, const std::string& name) {
    mproc::Event ready;
    auto child = mproc::fork_context.Process(target, name, ready);
    child.start();
    EXPECT_TRUE(ready.wait(20s)) << "the child did not get ready";
    return child;
}

}  // namespace

// Row 10: a creator killed with SIGKILL leaves its segment only until the next sweep, which every
// create or attach runs.
TEST_F(ShmFaults, KilledCreatorsSegmentIsRemovedByTheNextSweep) {
    const std::string name = unique("killed_creator");
    auto child = started_until_ready(create_and_wait, name);
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    EXPECT_EQ(mproc::sweep_shared_memory(), 0) << "removed while its creator lives";
    child.kill();
    child.join();
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    // Any create or attach sweeps.
    mproc::SharedMemory other({.create = true, .size = 8});
    EXPECT_FALSE(mproc::testing::shm_exists(name));
    other.close();
    other.unlink();
}

// Row 11: the whole process group killed at once (every user, in the middle of anything); also a
// creator killed half-way through creating (its temporary file).
TEST_F(ShmFaults, KilledProcessGroupLeavesNothingAfterTheSweep) {
    const std::string base = unique("group");
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t leader = ::fork();
    if (leader == 0) {
        ::setsid();
        std::vector<mproc::SharedMemory> segments;
        for (int i = 0; i < 3; ++i)
            segments.emplace_back(mproc::SharedMemoryOptions{.name = base + std::to_string(i), .create = true, .size = 4096});
        // Each member reports its pid once ready (4 bytes: one atomic write to a pipe).
        const auto report_ready = [&ready] {
            const pid_t self = ::getpid();
            (void)!::write(ready[1], &self, sizeof self);
        };
        for (int i = 0; i < 2; ++i) {
            if (::fork() == 0) {
                mproc::SharedMemory attached({.name = base + "0"});
                report_ready();
                for (;;) ::pause();
            }
        }
        report_ready();
        for (;;) ::pause();
    }
    ASSERT_GT(leader, 0);
    ::close(ready[1]);
    pid_t members[3] = {};
    std::size_t got = 0;
    while (got < sizeof members) {
        const ssize_t n = ::read(ready[0], reinterpret_cast<char*>(members) + got, sizeof members - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(ready[0]);
    ASSERT_EQ(got, sizeof members);
    // A creator that died between creating its temporary file and publishing it.
    const std::string temporary = "/dev/shm/.mproc-new-" + std::to_string(leader) + "-1-00000000deadbeef";
    const int fd = ::open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    ASSERT_EQ(::kill(-leader, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(leader, &status, 0), leader);
    // The grandchildren were reparented (not zombies of ours): wait until they are gone, as the
    // sweep needs (a zombie counts as gone, for it as for process_gone).
    for (const pid_t member : members)
        EXPECT_TRUE(mproc::testing::eventually([member] { return mproc::testing::process_gone(member); }))
            << "process " << member << " of the killed group still runs";
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(mproc::testing::shm_exists(base + std::to_string(i)));
    EXPECT_GE(mproc::sweep_shared_memory(), 4);
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(mproc::testing::shm_exists(base + std::to_string(i)));
    EXPECT_NE(::access(temporary.c_str(), F_OK), 0);
}

// CPython issue 82300: a process that attached and then ended (normally or killed) must not take
// the segment away from the processes still using it.
TEST_F(ShmFaults, AttachersThatEndNeverRemoveASegmentInUse) {
    mproc::SharedMemory shm({.create = true, .size = 4096});
    for (const auto* context : {&mproc::get_context("fork"), &mproc::get_context("spawn")}) {
        for (bool killed : {false, true}) {
            mproc::Event attached;
            auto child = context->Process(attach_and_leave, shm.name(), killed, attached);
            child.start();
            ASSERT_TRUE(attached.wait(20s));
            if (killed) child.kill();
            child.join();
            mproc::sweep_shared_memory();
            EXPECT_TRUE(mproc::testing::shm_exists(shm.name())) << context->name() << (killed ? " killed" : " exited");
            mproc::SharedMemory again({.name = shm.name()});
            EXPECT_EQ(again.buf()[1], std::byte{2});
        }
    }
    const std::string name = shm.name();
    shm.close();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "close() removed the name (Python keeps it for unlink)";
    shm.unlink();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// Users killed at random moments, attaching and detaching in a loop (perhaps while holding the
// segment's table lock): the table stays usable, and nothing is left.
TEST_F(ShmFaults, UsersKilledWhileAttachingLeaveATableThatStillCounts) {
    mproc::SharedMemory shm({.create = true, .size = 4096});
    std::mt19937 random(99);
    for (int round = 0; round < 60; ++round) {
        auto child = mproc::fork_context.Process(attach_in_a_loop, shm.name());
        child.start();
        std::this_thread::sleep_for(std::chrono::microseconds(200 + random() % 3000));
        child.kill();
        child.join();
    }
    mproc::SharedMemory check({.name = shm.name()});  // the table lock still works
    EXPECT_EQ(check.buf()[2], std::byte{3});
    const std::string name = shm.name();
    check.close();
    shm.close();
    shm.unlink();  // the table lock still works for unlink() after close()
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// A child forked while its parent has the segment open counts as a user until it ends: here the
// parent (an mproc child, P) creates, forks a raw child C, closes and ends; P's exit must not
// remove the name while C lives, and once C has ended the next sweep removes it.
void create_fork_close_and_end(std::string name, mproc::Event go, int pid_fd) {
    mproc::SharedMemory shm({.name = name, .create = true, .size = 64});
    const pid_t child = ::fork();
    if (child == 0) {
        if (!go.wait(20s)) ::_exit(1);
        shm.buf()[0] = std::byte{9};
        ::_exit(0);  // without closing
    }
    (void)::write(pid_fd, &child, sizeof child);
    shm.close();  // P's only handle; then P ends, and its exit sweeps
}

TEST_F(ShmFaults, ForkedChildrenCountAsUsers) {
    const std::string name = unique("forked_child");
    int pid_pipe[2];
    ASSERT_EQ(::pipe2(pid_pipe, O_CLOEXEC), 0);
    mproc::Event go;
    auto p = mproc::fork_context.Process(create_fork_close_and_end, name, go, pid_pipe[1]);
    p.start();
    ::close(pid_pipe[1]);
    pid_t grandchild = 0;
    ASSERT_EQ(::read(pid_pipe[0], &grandchild, sizeof grandchild), static_cast<ssize_t>(sizeof grandchild));
    ::close(pid_pipe[0]);
    // C is not our child: a pidfd tells when it has ended (readable once it is a zombie or gone).
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, grandchild, 0));
    ASSERT_GE(pidfd, 0) << std::strerror(errno);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "removed while a forked child still uses it";
    mproc::sweep_shared_memory();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "swept while a forked child still uses it";
    go.set();
    pollfd ended{pidfd, POLLIN, 0};
    EXPECT_EQ(::poll(&ended, 1, 20000), 1) << "the forked child did not end";
    ::close(pidfd);
    EXPECT_GE(mproc::sweep_shared_memory(), 1);
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "the next sweep after every user ended left the name";
}

// The last user to end removes the name as it exits, if it is an mproc process that created or
// attached it itself: nothing waits for a later sweep. Open or closed, unlinked or not.
void create_and_end(std::string name, bool close_first) {
    static mproc::SharedMemory* kept = nullptr;  // never destroyed: the exit must do the work
    kept = new mproc::SharedMemory({.name = name, .create = true, .size = 64});
    kept->buf()[0] = std::byte{1};
    if (close_first) kept->close();
}

TEST_F(ShmFaults, TheLastUserRemovesTheNameAsItEnds) {
    for (const auto* context : {&mproc::get_context("fork"), &mproc::get_context("spawn")}) {
        for (bool close_first : {false, true}) {
            const std::string name = unique("last_user");
            auto child = context->Process(create_and_end, name, close_first);
            child.start();
            child.join();
            EXPECT_EQ(child.exitcode(), 0);
            EXPECT_FALSE(mproc::testing::shm_exists(name)) << context->name() << (close_first ? " closed" : " open");
        }
    }
}

// A user that closed its handle but lives keeps the name (so it can attach again or unlink, as in
// Python); killed, it leaves the name only until the next sweep.
void create_close_and_wait(std::string name, mproc::Event closed) {
    mproc::SharedMemory shm({.name = name, .create = true, .size = 64});
    shm.buf()[0] = std::byte{5};
    shm.close();
    closed.set();
    for (;;) ::pause();
}

TEST_F(ShmFaults, ClosedUsersKeepTheNameUntilTheyEndHoweverTheyEnd) {
    const std::string name = unique("closed_user");
    auto child = started_until_ready(create_close_and_wait, name);
    mproc::sweep_shared_memory();
    ASSERT_TRUE(mproc::testing::shm_exists(name)) << "the name of a closed but living user's segment went";
    {
        mproc::SharedMemory look({.name = name, .track = false});  // attaching by name still works
        EXPECT_EQ(look.buf()[0], std::byte{5});
    }
    child.kill();
    child.join();
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    EXPECT_GE(mproc::sweep_shared_memory(), 1);
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// Row 12: on a full /dev/shm, creating a segment is an error at once, never a SIGBUS later; the
// primitives' memory (memfd) does not depend on /dev/shm at all.
TEST_F(ShmFaults, FullDevShmIsAClearErrorNotASigbus) {
    auto child = mproc::fork_context.Process([] {
        if (::unshare(CLONE_NEWNS) != 0) mproc::exit(77);
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) mproc::exit(77);
        if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0) mproc::exit(77);
        try {
            mproc::SharedMemory big({.create = true, .size = 1 << 20});
            mproc::exit(2);  // created: a SIGBUS would come at the first write
        } catch (const mproc::OSError& e) {
            if (e.code() != std::errc::no_space_on_device) mproc::exit(3);
        }
        {
            mproc::SharedMemory small({.create = true, .size = 16 * 1024});
            std::memset(small.buf().data(), 1, small.size());  // every page is there
            small.close();
            small.unlink();
        }
        mproc::Lock lock;  // memfd: unaffected
        mproc::RawArray<char> array(1 << 20);
        array[(1 << 20) - 1] = 1;
        std::lock_guard guard(lock);
        DIR* dir = ::opendir("/dev/shm");
        int entries = 0;
        while (dirent* e = ::readdir(dir)) entries += e->d_name[0] != '.';
        ::closedir(dir);
        mproc::exit(entries == 0 ? 0 : 4);  // nothing left behind by the failed creation
    });
    child.start();
    child.join();
    if (child.exitcode() == 77) GTEST_SKIP() << "no private mount namespace here (needs root); see ResourceLimitErrorPath";
    EXPECT_EQ(child.exitcode(), 0);
}

// The same error path where a private tmpfs cannot be mounted: a file size limit makes
// posix_fallocate fail (EFBIG) the way a full /dev/shm does (ENOSPC).
TEST_F(ShmFaults, ResourceLimitErrorPath) {
    auto child = mproc::fork_context.Process([] {
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit limit{64 * 1024, 64 * 1024};
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) mproc::exit(77);
        const auto before = mproc::testing::shm_entries();
        try {
            mproc::SharedMemory big({.create = true, .size = 1 << 20});
            mproc::exit(2);
        } catch (const mproc::OSError& e) {
            if (e.code() != std::errc::file_too_large) mproc::exit(3);
        }
        mproc::exit(mproc::testing::shm_entries() == before ? 0 : 4);
    });
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

// Row 13: a peer cannot truncate the memory of the primitives (their segments are sealed), so it
// cannot make the others fault.
TEST_F(ShmFaults, PeersCannotTruncateThePrimitivesMemory) {
    mproc::Value<long> value(5);
    mproc::Lock lock;
    for (const auto* context : {&mproc::get_context("fork"), &mproc::get_context("spawn")}) {
        auto child = context->Process(
            [](mproc::Value<long> v, mproc::Lock l) {
                // Every memfd this child has: the received or inherited segments.
                int sealed = 0, truncated = 0;
                DIR* dir = ::opendir("/proc/self/fd");
                while (dirent* e = ::readdir(dir)) {
                    char target[PATH_MAX] = {};
                    const std::string link = std::string("/proc/self/fd/") + e->d_name;
                    if (::readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
                    if (std::strncmp(target, "/memfd:mproc", 12) != 0) continue;
                    const int fd = std::atoi(e->d_name);
                    if (::ftruncate(fd, 0) == 0) {
                        ++truncated;
                    } else if (errno == EPERM) {
                        ++sealed;
                    }
                }
                ::closedir(dir);
                std::scoped_lock guard(l);
                v.value() += 1;
                mproc::exit(truncated == 0 && sealed > 0 ? 0 : 1);
            },
            value, lock);
        child.start();
        child.join();
        EXPECT_EQ(child.exitcode(), 0) << context->name();
    }
    EXPECT_EQ(value.load(), 7);
}

// The sweep removes only mproc segments whose users have all ended: not foreign files, not
// untracked segments, not segments in use.
TEST_F(ShmFaults, TheSweepLeavesOtherFilesAlone) {
    const std::string foreign = "/dev/shm/" + unique("foreign");
    const int fd = ::open(foreign.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 3 * 4096), 0);
    ::close(fd);
    mproc::SharedMemory untracked({.create = true, .size = 10, .track = false});
    mproc::SharedMemory in_use({.create = true, .size = 10});
    EXPECT_EQ(mproc::sweep_shared_memory(), 0);
    EXPECT_TRUE(mproc::testing::shm_exists(untracked.name()));
    EXPECT_TRUE(mproc::testing::shm_exists(in_use.name()));
    EXPECT_EQ(::access(foreign.c_str(), F_OK), 0);
    ::unlink(foreign.c_str());
    untracked.unlink();
    in_use.unlink();
}
