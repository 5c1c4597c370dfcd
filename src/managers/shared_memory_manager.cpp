// SharedMemoryManager: a BaseManager whose server holds one tracker of segment names
// (shared_memory_manager.hpp). The tracker is a registered type shared by every client; in the
// server it unlinks what it tracks from the server's exit sequence, and from a thread that
// watches the owner, for an owner that dies without shutting the server down.
#include "mproc/shared_memory_manager.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "base/deadline.hpp"
#include "mproc/errors.hpp"
#include "mproc/logging.hpp"
#include "mproc/process.hpp"
#include "process/runtime.hpp"

namespace mproc {
namespace {

constexpr const char* kTrackerType = "SharedMemoryTracker";

// Python's SharedMemoryServer.destroy_segment, quietly: a name already gone was unlinked by
// someone else, which is what was wanted.
void unlink_segment(const std::string& name) noexcept {
    try {
        mproc::SharedMemory segment({.name = name, .create = false, .size = 0, .track = false});
        segment.close();
        segment.unlink();
        get_logger().debug("SharedMemoryManager: unlinked segment '{}'", name);
    } catch (const OSError& e) {
        if (e.code() != std::errc::no_such_file_or_directory)
            get_logger().warning("SharedMemoryManager: could not unlink '{}': {}", name, e.what());
    } catch (const std::exception& e) {
        get_logger().warning("SharedMemoryManager: could not unlink '{}': {}", name, e.what());
    }
}

// The names one server tracks. Shared with the exit task and the owner's watcher, which may
// outlive the calls.
struct TrackedNames {
    std::mutex mutex;
    std::vector<std::string> names;

    void unlink_all() {
        std::vector<std::string> taken;
        {
            std::lock_guard lock(mutex);
            taken.swap(names);
        }
        for (const auto& name : taken) unlink_segment(name);
    }
};

// The parent-death signal is an attribute of each thread, not of the process: the kernel sends
// it for every thread of the child that asked for it. A manager's server asked in its first
// thread (child_bootstrap), which now waits for the shutdown request; this thread asks that one,
// by a signal, to stop asking.
std::atomic<bool> first_thread_let_go{false};

void stop_parent_death_signal(int) {
    ::prctl(PR_SET_PDEATHSIG, 0);
    first_thread_let_go.store(true);
}

bool let_go_of_parent_death_signal() {
    ::prctl(PR_SET_PDEATHSIG, 0);  // this thread's, should it have one
    struct sigaction action {};
    action.sa_handler = stop_parent_death_signal;
    ::sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    const int signal_number = SIGRTMAX - 1;
    if (::sigaction(signal_number, &action, nullptr) != 0) return false;
    const pid_t pid = ::getpid();
    if (::syscall(SYS_tgkill, pid, pid, signal_number) != 0) return false;
    // The first thread is asleep in a wait and takes the signal at once; a generous deadline in
    // case the machine is busy.
    const detail::Deadline deadline = detail::Deadline::after(std::chrono::seconds(10));
    while (!first_thread_let_go.load()) {
        if (deadline.passed()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

// Ends the server once its owner has ended, after unlinking what it tracks: every manager's
// server dies with its owner (SIGKILL on the owner's death, managers.hpp); this one takes that
// over so that it can clean up first.
void watch_owner(const std::shared_ptr<TrackedNames>& tracked) {
    std::optional<Process> owner = parent_process();
    if (!owner) return;
    if (!let_go_of_parent_death_signal()) {
        get_logger().warning("SharedMemoryManager: the server cannot watch its owner; if the owner is killed, "
                             "its segments stay until the next sweep of /dev/shm");
        return;
    }
    std::thread([tracked, owner = std::move(*owner)]() mutable {
        try {
            owner.join();
        } catch (const std::exception& e) {
            get_logger().warning("SharedMemoryManager: watching the owner failed: {}", e.what());
        }
        get_logger().info("SharedMemoryManager: the owner has ended; unlinking the segments and ending");
        tracked->unlink_all();
        ::kill(::getpid(), SIGKILL);
    }).detach();
}

// Python's _SharedMemoryTracker, in the server.
class SegmentTracker {
public:
    // `started_by_owner`: the server runs in a process that start() made, not in a process that
    // serves with get_server().
    explicit SegmentTracker(bool started_by_owner) : tracked_(std::make_shared<TrackedNames>()) {
        auto tracked = tracked_;
        detail::at_exit(detail::ExitPhase::before_children, [tracked] { tracked->unlink_all(); });
        if (started_by_owner) watch_owner(tracked_);
    }

    void track_segment(std::string name) {
        std::lock_guard lock(tracked_->mutex);
        tracked_->names.push_back(std::move(name));
    }

    void release_segment(std::string name) {
        {
            std::lock_guard lock(tracked_->mutex);
            auto& names = tracked_->names;
            auto it = std::find(names.begin(), names.end(), name);
            if (it == names.end()) throw ValueError("list.remove(x): x not in list");
            names.erase(it);
        }
        unlink_segment(name);
    }

    std::vector<std::string> list_segments() {
        std::lock_guard lock(tracked_->mutex);
        return tracked_->names;
    }

private:
    std::shared_ptr<TrackedNames> tracked_;
};

}  // namespace

SharedMemoryManager::SharedMemoryManager(ManagerOptions options) : BaseManager(std::move(options)) {
    register_type<SegmentTracker, bool>(kTrackerType, TypeOptions{.shared = true})
        .method<&SegmentTracker::track_segment>("track_segment")
        .method<&SegmentTracker::release_segment>("release_segment")
        .method<&SegmentTracker::list_segments>("list_segments");
}

void SharedMemoryManager::start() {
    BaseManager::start();
    tracker();
}

void SharedMemoryManager::shutdown() {
    tracker_ = Proxy();  // released while the server can still hear it
    BaseManager::shutdown();
}

Proxy& SharedMemoryManager::tracker() {
    if (!tracker_.valid()) tracker_ = create(kTrackerType, process().has_value());
    return tracker_;
}

mproc::SharedMemory SharedMemoryManager::SharedMemory(std::int64_t size) {
    Proxy& tracking = tracker();
    mproc::SharedMemory segment({.name = {}, .create = true, .size = size, .track = true});
    try {
        tracking.call<void>("track_segment", segment.name());
    } catch (...) {
        segment.unlink();
        throw;
    }
    return segment;
}

mproc::ShareableList SharedMemoryManager::ShareableList(std::initializer_list<ShareableValue> sequence) {
    return ShareableList(std::vector<ShareableValue>(sequence));
}

mproc::ShareableList SharedMemoryManager::ShareableList(const std::vector<ShareableValue>& sequence) {
    Proxy& tracking = tracker();
    mproc::ShareableList list(sequence);
    try {
        tracking.call<void>("track_segment", list.name());
    } catch (...) {
        list.shm().unlink();
        throw;
    }
    return list;
}

std::vector<std::string> SharedMemoryManager::list_segments() {
    return tracker().call<std::vector<std::string>>("list_segments");
}

void SharedMemoryManager::release_segment(const std::string& name) {
    tracker().call<void>("release_segment", name);
}

}  // namespace mproc
