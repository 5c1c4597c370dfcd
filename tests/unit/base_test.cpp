// The ground floor (src/base/): the fork-hook and exit-task registry, the owners of descriptors and
// mappings, the one Deadline and the one duration-to-timeout rule.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "base/deadline.hpp"
#include "base/lifecycle.hpp"
#include "base/mapping.hpp"
#include "base/unique_fd.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::detail::Deadline;
using mproc::detail::Floor;
using mproc::detail::MappedRegion;
using mproc::detail::UniqueFd;

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// What the hooks below record, in the order they ran: "<phase><tag>" per call.
std::string& trace() {
    static std::string calls;
    return calls;
}
template <char Tag>
void record_prepare() {
    trace() += 'P';
    trace() += Tag;
}
template <char Tag>
void record_parent() {
    trace() += 'A';
    trace() += Tag;
}
template <char Tag>
void record_child() {
    trace() += 'C';
    trace() += Tag;
}
template <char Tag>
mproc::detail::ForkHooks recorder() {
    return {.prepare = record_prepare<Tag>, .parent = record_parent<Tag>, .child = record_child<Tag>};
}

TEST(ForkHooks, RunByFloorWhateverTheRegistrationOrder) {
    // Registered top floor first, with two hooks on one floor: prepare runs from the top floor
    // down (within a floor in reverse registration order), parent and child from the bottom up.
    static bool registered = false;
    if (!registered) {
        mproc::detail::register_fork_hooks(Floor::managers, recorder<'m'>());
        mproc::detail::register_fork_hooks(Floor::base, recorder<'b'>());
        mproc::detail::register_fork_hooks(Floor::queue, recorder<'q'>());
        mproc::detail::register_fork_hooks(Floor::base, recorder<'c'>());
        registered = true;
    }
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    trace().clear();
    const std::uint64_t generation = mproc::detail::fork_generation();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::string report = trace();
        report += mproc::detail::fork_generation() == generation + 1 ? " generation+1" : " generation?";
        const auto written = ::write(pipe_fds[1], report.data(), report.size());
        ::_exit(written == static_cast<ssize_t>(report.size()) ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    const std::string in_parent = trace();
    char buffer[256];
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    ::close(pipe_fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_GT(n, 0);
    // Other floors' own hooks (the library's) may run too: look at this test's tags only.
    auto only_ours = [](const std::string& calls) {
        std::string kept;
        for (std::size_t i = 0; i + 1 < calls.size(); i += 2)
            if (std::string("bcqm").find(calls[i + 1]) != std::string::npos) kept += calls.substr(i, 2);
        return kept;
    };
    EXPECT_EQ(only_ours(in_parent), "PmPqPcPbAbAcAqAm");
    const std::string child(buffer, static_cast<std::size_t>(n));
    EXPECT_EQ(only_ours(child.substr(0, child.find(' '))), "PmPqPcPbCbCcCqCm");
    EXPECT_NE(child.find(" generation+1"), std::string::npos) << child;
    EXPECT_EQ(mproc::detail::fork_generation(), generation);  // the parent's is unchanged
}

TEST(ExitTasks, TakenInOrderAndForgotten) {
    using mproc::detail::ExitPhase;
    // Keep the library's own tasks: take them, run this test's, put them back.
    auto saved_before = mproc::detail::take_exit_tasks(ExitPhase::before_children);
    auto saved_after = mproc::detail::take_exit_tasks(ExitPhase::after_children);
    std::string ran;
    mproc::detail::at_exit(ExitPhase::before_children, [&ran] { ran += '1'; });
    mproc::detail::at_exit(ExitPhase::after_children, [&ran] { ran += 'x'; });
    mproc::detail::at_exit(ExitPhase::before_children, [&ran] { ran += '2'; });
    auto before = mproc::detail::take_exit_tasks(ExitPhase::before_children);
    ASSERT_EQ(before.size(), 2U);
    for (auto& task : before) task();
    EXPECT_EQ(ran, "12");
    EXPECT_TRUE(mproc::detail::take_exit_tasks(ExitPhase::before_children).empty());
    mproc::detail::forget_exit_tasks();
    EXPECT_TRUE(mproc::detail::take_exit_tasks(ExitPhase::after_children).empty());
    for (auto& task : saved_before) mproc::detail::at_exit(ExitPhase::before_children, std::move(task));
    for (auto& task : saved_after) mproc::detail::at_exit(ExitPhase::after_children, std::move(task));
}

TEST(UniqueFdTest, ClosesOnDestructionResetAndMoveAssignment) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    {
        UniqueFd reader(fds[0]);
        UniqueFd writer(fds[1]);
        EXPECT_TRUE(reader);
        UniqueFd moved(std::move(reader));
        EXPECT_FALSE(reader);
        EXPECT_EQ(moved.get(), fds[0]);
        writer = std::move(moved);  // closes the old writer
        EXPECT_FALSE(fd_open(fds[1]));
        EXPECT_TRUE(fd_open(fds[0]));
    }
    EXPECT_FALSE(fd_open(fds[0]));
}

TEST(UniqueFdTest, ReleaseGivesUpOwnership) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    int kept = -1;
    {
        UniqueFd owner(fds[0]);
        kept = owner.release();
        UniqueFd other(fds[1]);
        other.reset();
        EXPECT_FALSE(fd_open(fds[1]));
    }
    EXPECT_TRUE(fd_open(kept));
    mproc::detail::close_fd(kept);
    EXPECT_FALSE(fd_open(kept));
}

TEST(UniqueFdTest, DuplicateIsCloseOnExecAndFullTableIsOSError) {
    UniqueFd original(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(original);
    UniqueFd copy = mproc::detail::duplicate_fd(original.get(), "duplicating");
    EXPECT_NE(copy.get(), original.get());
    EXPECT_TRUE(::fcntl(copy.get(), F_GETFD) & FD_CLOEXEC);

    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(copy.get());  // no descriptor at or above the copy's number
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
    // Nothing but the call runs under the tight limit: UBSan's checks of a member call open a pipe,
    // and would misreport the exception object while no descriptor is left.
    std::exception_ptr error;
    try {
        static_cast<void>(mproc::detail::duplicate_fd(original.get(), "duplicating the test's descriptor"));
    } catch (...) {
        error = std::current_exception();
    }
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    ASSERT_TRUE(error) << "a full descriptor table must be an OSError";
    try {
        std::rethrow_exception(error);
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), EMFILE);
        EXPECT_NE(std::string(e.what()).find("duplicating the test's descriptor"), std::string::npos) << e.what();
    } catch (...) {
        ADD_FAILURE() << "a full descriptor table must be an OSError";
    }
}

bool mapped(const void* address) {
    std::ifstream maps("/proc/self/maps");
    const auto wanted = reinterpret_cast<std::uintptr_t>(address);
    std::string line;
    while (std::getline(maps, line)) {
        const auto dash = line.find('-');
        const auto start = std::stoull(line.substr(0, dash), nullptr, 16);
        const auto end = std::stoull(line.substr(dash + 1), nullptr, 16);
        if (wanted >= start && wanted < end) return true;
    }
    return false;
}

TEST(MappedRegionTest, UnmapsOnDestructionAndMove) {
    void* first = nullptr;
    {
        MappedRegion region = MappedRegion::map(1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, "mapping");
        first = region.get();
        region.bytes()[100] = std::byte{7};
        EXPECT_EQ(region.size(), std::size_t{1} << 16);
        EXPECT_TRUE(mapped(first));
        MappedRegion moved(std::move(region));
        EXPECT_FALSE(region);
        EXPECT_EQ(moved.bytes()[100], std::byte{7});
    }
    EXPECT_FALSE(mapped(first));
}

TEST(MappedRegionTest, FailureIsOSErrorNamingTheOperation) {
    try {
        static_cast<void>(MappedRegion::map_shared(-1, 4096, "mapping the test's segment"));
        ADD_FAILURE() << "mapping a bad descriptor must fail";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), EBADF);
        EXPECT_NE(std::string(e.what()).find("mapping the test's segment"), std::string::npos) << e.what();
    }
}

TEST(Timeout, RoundsUpAndSaturates) {
    using mproc::detail::to_timeout;
    using mproc::detail::timeout_ns;
    EXPECT_EQ(to_timeout(std::chrono::duration<double, std::nano>(1.5)), 2ns);
    EXPECT_EQ(to_timeout(std::chrono::duration<double>(1e-10)), 1ns);  // never zero: not early
    EXPECT_EQ(to_timeout(std::chrono::duration<double, std::milli>(0.0000015)), 2ns);
    EXPECT_EQ(to_timeout(250ms), 250'000'000ns);
    EXPECT_EQ(to_timeout(-5s), 0ns);
    EXPECT_EQ(to_timeout(std::chrono::duration<double>(std::nan(""))), 0ns);
    EXPECT_EQ(to_timeout(std::chrono::hours::max()), std::nullopt);
    EXPECT_EQ(to_timeout(std::chrono::duration<double>(std::numeric_limits<double>::infinity())), std::nullopt);
    EXPECT_EQ(timeout_ns(std::chrono::hours::max()), mproc::detail::kForever);
    EXPECT_EQ(timeout_ns(3us), 3000);
    EXPECT_EQ(mproc::detail::timeout_from_ns(mproc::detail::kForever), std::nullopt);
    EXPECT_EQ(mproc::detail::timeout_from_ns(7), 7ns);
}

TEST(DeadlineTest, NeverAndAfter) {
    const Deadline never = Deadline::never();
    EXPECT_FALSE(never.finite());
    EXPECT_FALSE(never.passed());
    EXPECT_EQ(never.remaining(), std::nullopt);
    EXPECT_EQ(never.poll_timeout_ms(), -1);
    EXPECT_FALSE(Deadline::from_ns(mproc::detail::kForever).finite());

    const Deadline past = Deadline::after(-1s);  // negative is zero
    EXPECT_TRUE(past.passed());
    EXPECT_EQ(past.remaining_ns(), 0);
    EXPECT_EQ(past.poll_timeout_ms(), 0);

    const Deadline soon = Deadline::from_ns(1'000);  // 1 µs: poll(2) must still wait 1 ms, not 0
    EXPECT_LE(soon.poll_timeout_ms(), 1);
    const Deadline later = Deadline::after(10min);
    EXPECT_FALSE(later.passed());
    EXPECT_GT(later.poll_timeout_ms(), 9 * 60 * 1000);
    EXPECT_LE(later.remaining_ns(), std::chrono::nanoseconds(10min).count());
    EXPECT_EQ(later.capped(1ms).finite(), true);
    EXPECT_LE(later.capped(1ms).remaining_ns(), 1'000'000);
}

TEST(DeadlineTest, PollTimeoutRoundsUp) {
    const Deadline d = Deadline::after(1500us);
    const int ms = d.poll_timeout_ms();
    // 1.5 ms rounds up to 2 (or 1 if more than 0.5 ms passed since): never 0 while time remains.
    EXPECT_GE(ms, 1);
    EXPECT_LE(ms, 2);
}

}  // namespace
