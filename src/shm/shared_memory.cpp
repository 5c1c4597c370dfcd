// Named shared memory whose name lives until unlink() or the end of every process that used it
// (shared_memory.hpp).
//
// A segment is the file /dev/shm/<name>: the user's bytes first (so that Python sees them at
// offset 0), then a trailer of kTrailerSize bytes, page-aligned, that holds the table of the
// processes that used it (created or attached it with tracking, or were forked while it was open)
// under a robust mutex. A process keeps its slot after close(), until it ends: the name is removed
// by unlink(), or by a sweep once every process in the table has ended (the exit of an mproc
// process sweeps, counting itself as ended). A segment is created under a temporary name,
// initialized completely (its creator already in the table), and only then linked under its real
// name, so an attacher never sees a half-made segment and a creator that dies midway leaves only a
// temporary file that the sweep recognizes by name.
#include "mproc/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "mproc/errors.hpp"
#include "base/lifecycle.hpp"
#include "base/futex.hpp"
#include "base/identity.hpp"
#include "base/mapping.hpp"
#include "base/mutex_state.hpp"
#include "base/mutex_state_guard.hpp"
#include "base/unique_fd.hpp"
#include "shm/dev_shm.hpp"
#include "shm/shared_buffer_sweep.hpp"

namespace mproc::detail {
namespace {

constexpr std::size_t kPageSize = 4096;
constexpr std::size_t kTrailerSize = 8192;
constexpr std::uint64_t kTrailerMagic = 0x6d70726f632d6e6dULL;  // "mproc-nm"
constexpr std::uint32_t kTrailerVersion = 1;
constexpr int kSlots = 500;
// ProcessIdentity::reserved of a slot taken before a fork for the child to come.
constexpr std::uint32_t kPendingFork = 1;

struct Trailer {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t trailer_size;
    std::uint64_t data_size;
    std::uint64_t segment_id;  // random: tells this segment from a later one of the same name
    std::uint32_t auto_unlink;  // created with track = true: remove the name once its users have ended
    std::uint32_t unlinked;     // the name has been removed
    MutexState lock;            // guards the slots and `unlinked`
    ProcessIdentity slots[kSlots];  // the processes that used the segment (pid 0: free)
};
static_assert(sizeof(Trailer) <= kTrailerSize);

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::string path_of(const std::string& name) { return dev_shm_path(name); }

// Locks the trailer's robust mutex. An owner that died mid-update can at worst leave one slot
// half-written: a slot's pid is written last and cleared first, so such a slot reads as free or as
// a process that is not alive, never as a live user.
// `what` names the operation that needs the lock, for the error.
MutexStateGuard lock_trailer(Trailer& t, const std::string& what) {
    const int rc = raw_mutex_acquire(t.lock, kForever);
    if (rc != 0 && rc != EOWNERDEAD) throw OSError(what + " (locking its table)", rc);
    return MutexStateGuard(t.lock, std::adopt_lock);
}

// The same, bounded for the fork handlers: a stopped process that holds the table's lock must not
// hold up every fork. A guard that holds nothing when the lock did not come within a second.
MutexStateGuard lock_trailer_for_fork(Trailer& t) noexcept {
    const int rc = raw_mutex_acquire(t.lock, 1'000'000'000);
    if (rc != 0 && rc != EOWNERDEAD) return {};
    return MutexStateGuard(t.lock, std::adopt_lock);
}

void clear_slot(ProcessIdentity& slot) {
    std::atomic_ref<std::int32_t>(slot.pid).store(0, std::memory_order_relaxed);
    slot.start_time = 0;
    slot.reserved = 0;
}

bool same_process(const ProcessIdentity& a, const ProcessIdentity& b) {
    return a.pid == b.pid && a.start_time == b.start_time;
}

// Whether the process of a taken slot still counts as a user. `ending`: a process in its exit
// sequence, counted as ended already (its handles go with it).
bool counts(const ProcessIdentity& slot, const ProcessIdentity* ending) {
    if (ending != nullptr && same_process(slot, *ending)) return false;
    return process_alive(slot);
}

// Frees the slots of ended processes; returns how many live ones remain. Trailer locked.
int prune(Trailer& t, const ProcessIdentity* ending = nullptr) {
    int live = 0;
    for (auto& slot : t.slots) {
        if (slot.pid == 0) continue;
        if (counts(slot, ending)) {
            ++live;
        } else {
            clear_slot(slot);
        }
    }
    return live;
}

// Takes a slot for `who`, or finds the one it has (a process that attaches again after closing,
// or twice at once, holds one slot); -1 when the table is full of live processes. Trailer locked.
int take_slot(Trailer& t, const ProcessIdentity& who) {
    if (who.reserved == 0) {
        for (int i = 0; i < kSlots; ++i) {
            if (t.slots[i].pid != 0 && t.slots[i].reserved == 0 && same_process(t.slots[i], who)) return i;
        }
    }
    for (int pass = 0; pass < 2; ++pass) {
        for (int i = 0; i < kSlots; ++i) {
            if (t.slots[i].pid == 0) {
                t.slots[i].start_time = who.start_time;
                t.slots[i].reserved = who.reserved;
                std::atomic_ref<std::int32_t>(t.slots[i].pid).store(who.pid, std::memory_order_relaxed);
                return i;
            }
        }
        prune(t);
    }
    return -1;
}

// Removes /dev/shm/<name> if it is still the segment `id` (someone may have removed it by hand
// and created another under the same name meanwhile); false when it was not there.
bool unlink_if_same(const std::string& name, std::uint64_t id) {
    const std::string path = path_of(name);
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) return false;
    struct stat st {};
    bool same = false;
    if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::size_t>(st.st_size) >= kTrailerSize) {
        Trailer head{};
        const off_t at = st.st_size - static_cast<off_t>(kTrailerSize);
        if (::pread(fd.get(), &head, offsetof(Trailer, lock), at) == static_cast<ssize_t>(offsetof(Trailer, lock)))
            same = head.magic == kTrailerMagic && head.segment_id == id;
    }
    return same && ::unlink(path.c_str()) == 0;
}

// unlink(): removes the name now, whatever the table says (Python's meaning). `t`: the segment's
// trailer, mapped by the caller; nullptr for a segment without one (made by Python, say).
void unlink_segment(const std::string& name, Trailer* t) {
    const std::string what = "unlinking shared memory '" + name + "'";
    if (t == nullptr) {
        if (::unlink(path_of(name).c_str()) != 0) throw OSError(what, errno);
        return;
    }
    const MutexStateGuard guard = lock_trailer(*t, what);
    if (t->unlinked) throw OSError(what, ENOENT);
    t->unlinked = 1;
    // Not there: removed by hand (or by a Python process's shm_unlink), which is an unlink too.
    if (!unlink_if_same(name, t->segment_id)) throw OSError(what, ENOENT);
}

}  // namespace

// One process's use of a segment, shared by the copies of a SharedMemory handle.
class Attachment {
public:
    Attachment(std::string name, MappedRegion mapping, std::size_t data_size, Trailer* trailer, int slot)
        : name_(std::move(name)), mapping_(std::move(mapping)), data_size_(data_size), trailer_(trailer), slot_(slot) {
        std::lock_guard lock(registry_mutex());
        registry().push_back(this);
    }
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;
    ~Attachment() {
        {
            std::lock_guard lock(registry_mutex());
            std::erase(registry(), this);
        }
        // Closing (mapping_ goes with the members) leaves this process's slot in the table until
        // the process ends: the name stays for a later attach or unlink() (Python's close() leaves
        // the name alone too).
    }

    std::byte* data() const noexcept { return mapping_.bytes(); }
    std::size_t data_size() const noexcept { return data_size_; }

    void unlink() { unlink_segment(name_, trailer_); }

    // fork() with this process attached: the child is a user too, from its first instant, so its
    // slot is taken before the fork, in the parent's name and marked pending; the child makes it
    // its own, and the parent's fork() returns once it has (await_claim). Were the child to take
    // a slot only after the fork, the parent could end meanwhile, and its exit's sweep (or a
    // later one) find nobody left and remove the segment under the child.
    void reserve_for_fork() noexcept {
        pending_slot_ = -1;
        if (trailer_ == nullptr || slot_ < 0) return;
        const MutexStateGuard guard = lock_trailer_for_fork(*trailer_);
        if (!guard.owns_lock()) return;
        if (!trailer_->unlinked) {
            ProcessIdentity pending = self_identity();
            pending.reserved = kPendingFork;
            pending_slot_ = take_slot(*trailer_, pending);
        }
    }
    void claim_in_child() noexcept {
        const int reserved = std::exchange(pending_slot_, -1);
        slot_ = -1;
        if (reserved < 0) return;
        const MutexStateGuard guard = lock_trailer_for_fork(*trailer_);  // bounded, as before the fork
        if (!guard.owns_lock()) return;
        ProcessIdentity& slot = trailer_->slots[reserved];
        const ProcessIdentity child = fresh_self_identity();
        if (slot.reserved == kPendingFork && slot.pid == static_cast<std::int32_t>(::getppid())) {
            slot.start_time = child.start_time;
            slot.reserved = 0;
            std::atomic_ref<std::int32_t>(slot.pid).store(child.pid, std::memory_order_release);
            futex_wake(reinterpret_cast<std::atomic<std::uint32_t>*>(&slot.pid), kWakeAll);  // the parent waits
            slot_ = reserved;
        } else if (!trailer_->unlinked) {
            slot_ = take_slot(*trailer_, child);  // the parent gave up waiting: late, but counted
        }
    }
    // In the parent after the fork: waits (bounded) until the child has claimed its slot, so that
    // a child killed right after fork() returns has claimed it already. A child that is not
    // scheduled in time loses the reservation and, when it runs, takes a slot of its own.
    void await_claim(const Deadline& deadline) noexcept {
        const int reserved = std::exchange(pending_slot_, -1);
        if (reserved < 0) return;
        ProcessIdentity& slot = trailer_->slots[reserved];
        auto* word = reinterpret_cast<std::atomic<std::uint32_t>*>(&slot.pid);
        const auto self = static_cast<std::uint32_t>(::getpid());
        while (word->load(std::memory_order_acquire) == self && !deadline.passed()) futex_wait(word, self, deadline);
        if (word->load(std::memory_order_acquire) != self) return;
        const MutexStateGuard guard = lock_trailer_for_fork(*trailer_);
        if (!guard.owns_lock()) return;
        if (slot.reserved == kPendingFork && word->load(std::memory_order_relaxed) == self) clear_slot(slot);
    }

    static std::vector<Attachment*>& registry() {
        static auto* attachments = new std::vector<Attachment*>;  // never destroyed, like the handles' users
        return *attachments;
    }
    // Held from fork's prepare handler until after the fork in both processes, so the list does
    // not change while a fork copies it.
    static std::mutex& registry_mutex() {
        static auto* mutex = new std::mutex;
        return *mutex;
    }

private:
    std::string name_;
    MappedRegion mapping_;
    std::size_t data_size_;
    Trailer* trailer_;
    int slot_;
    int pending_slot_ = -1;
};

namespace {

void before_fork() {
    Attachment::registry_mutex().lock();
    for (Attachment* a : Attachment::registry()) a->reserve_for_fork();
}
void after_fork_in_parent() {
    const Deadline deadline = Deadline::after(std::chrono::milliseconds(100));
    for (Attachment* a : Attachment::registry()) a->await_claim(deadline);
    Attachment::registry_mutex().unlock();
}
void after_fork_in_child() {
    for (Attachment* a : Attachment::registry()) a->claim_in_child();
    Attachment::registry_mutex().unlock();
}

int sweep(const ProcessIdentity* ending);

// This process is ending: its slots no longer count, so a segment it was the last user of goes now
// rather than at some later program's sweep.
void sweep_at_exit() {
    try {
        const ProcessIdentity self = fresh_self_identity();
        sweep(&self);
    } catch (...) {
    }
}

// Once per process: the fork handlers, and the sweep at the end of this process's exit sequence.
void prepare_process() {
    static std::once_flag fork_handlers;
    std::call_once(fork_handlers, [] {
        register_fork_hooks(Floor::shm, {.prepare = before_fork, .parent = after_fork_in_parent, .child = after_fork_in_child});
    });
    static std::atomic<pid_t> registered_in{0};
    const pid_t self = ::getpid();
    if (registered_in.exchange(self) != self) at_exit(ExitPhase::after_children, sweep_at_exit);
}

// `operation`: "creating" or "attaching", for the error.
std::string checked_name(std::string name, const char* operation) {
    // Python's ValueError from the system call's argument conversion.
    if (name.find('\0') != std::string::npos) throw UsageError("embedded null byte");
    if (!name.empty() && name.front() == '/') name.erase(0, 1);
    const std::string what = std::string(operation) + " shared memory '" + name + "'";
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.rfind(kTemporaryPrefix, 0) == 0)
        throw OSError(what + " (not a valid name)", EINVAL);
    if (is_buffer_name(name)) throw OSError(what + " (a SharedBuffer's name: psb_ and 16 hex digits)", EINVAL);
    if (name.size() > 200) throw OSError(what, ENAMETOOLONG);
    return name;
}

std::string random_name() {
    char text[16];
    std::snprintf(text, sizeof text, "psm_%08x", static_cast<unsigned>(random_u64("creating shared memory")));
    return text;
}

// `what` names the operation that maps, for the error.
MappedRegion map_file(int fd, std::size_t size, const std::string& what) {
    return MappedRegion::map_shared(fd, size, (what + " (mmap)").c_str());
}

Trailer* trailer_of(const MappedRegion& m) {
    if (m.size() < kTrailerSize) return nullptr;
    auto* t = reinterpret_cast<Trailer*>(m.bytes() + m.size() - kTrailerSize);
    if (t->magic != kTrailerMagic || t->version != kTrailerVersion || t->trailer_size != kTrailerSize ||
        round_up(t->data_size, kPageSize) + kTrailerSize != m.size())
        return nullptr;
    return t;
}

std::shared_ptr<Attachment> create_segment(const std::string& name, std::size_t size, bool track) {
    const ProcessIdentity self = self_identity();
    const std::size_t total = round_up(size, kPageSize) + kTrailerSize;
    FileInTheMaking file(total, "creating shared memory '" + name + "'");
    auto* t = new (file.bytes() + total - kTrailerSize) Trailer{};
    pthread_mutexattr_t attributes;
    ::pthread_mutexattr_init(&attributes);
    ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    const int rc = ::pthread_mutex_init(&t->lock.mutex, &attributes);
    ::pthread_mutexattr_destroy(&attributes);
    if (rc != 0) file.fail(rc, "pthread_mutex_init");
    t->version = kTrailerVersion;
    t->trailer_size = kTrailerSize;
    t->data_size = size;
    t->segment_id = random_u64("creating shared memory");
    t->auto_unlink = track ? 1 : 0;
    const int slot = track ? take_slot(*t, self) : -1;
    t->magic = kTrailerMagic;
    return std::make_shared<Attachment>(name, file.publish(name), size, t, slot);
}

// Maps the whole file /dev/shm/<name>; an empty file is not mapped (an empty region). `what`
// names the operation, for the errors. The descriptor closes on return: the mapping is all that
// is needed.
MappedRegion map_named(const std::string& name, const std::string& what) {
    const UniqueFd fd(::open(path_of(name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) throw OSError(what, errno);
    struct stat st {};
    const int error = ::fstat(fd.get(), &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (error != 0) throw OSError(what, error);
    if (st.st_size == 0) return {};
    return map_file(fd.get(), static_cast<std::size_t>(st.st_size), what);
}

std::shared_ptr<Attachment> attach_segment(const std::string& name, bool track, std::size_t& data_size) {
    // A segment can be removed between the open and the lock (unlinked, or swept); then the name
    // may already belong to a new segment, so look again, a few times.
    const std::string what = "attaching shared memory '" + name + "'";
    for (int attempt = 0; attempt < 5; ++attempt) {
        MappedRegion m = map_named(name, what);
        if (!m) throw OSError(what + " (an empty file)", EINVAL);
        Trailer* t = trailer_of(m);
        if (t == nullptr) {
            // Not an mproc segment (Python's, say): used as it is, never counted nor removed.
            data_size = m.size();
            return std::make_shared<Attachment>(name, std::move(m), data_size, nullptr, -1);
        }
        int slot = -1;
        bool gone = false;
        bool full = false;
        {
            const MutexStateGuard guard = lock_trailer(*t, what);
            gone = t->unlinked != 0;
            if (!gone && track && t->auto_unlink) {
                slot = take_slot(*t, self_identity());
                full = slot < 0;
            }
        }
        if (full) throw OSError(what + " (" + std::to_string(kSlots) + " live processes use it already)", EMFILE);
        if (gone) continue;  // unmapped with `m`; look again
        data_size = static_cast<std::size_t>(t->data_size);
        return std::make_shared<Attachment>(name, std::move(m), data_size, t, slot);
    }
    throw OSError(what, ENOENT);
}

// unlink() on a closed handle: by name, as Python's unlink() after close() does.
void unlink_by_name(const std::string& name) {
    const std::string what = "unlinking shared memory '" + name + "'";
    const MappedRegion m = map_named(name, what);
    unlink_segment(name, m ? trailer_of(m) : nullptr);
}

// The sweep's verdict on one file of /dev/shm; removes it when it is garbage. True if removed.
// `ending`: the process running the sweep in its exit sequence, whose slots no longer count.
bool sweep_one(const char* entry, const ProcessIdentity* ending) {
    const std::string name = entry;
    const std::string path = path_of(name);
    if (name.rfind(kTemporaryPrefix, 0) == 0) {
        // ".mproc-new-<pid>-<start time>-<random>": a creation in progress, or abandoned by a creator
        // that died.
        ProcessIdentity creator;
        unsigned long long start = 0;
        int pid = 0;
        if (std::sscanf(name.c_str() + std::strlen(kTemporaryPrefix), "%d-%llu-", &pid, &start) != 2) return false;
        creator.pid = pid;
        creator.start_time = start;
        if (process_alive(creator)) return false;
        return ::unlink(path.c_str()) == 0;
    }
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) return false;  // gone, or not ours to touch
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) < kTrailerSize ||
        static_cast<std::size_t>(st.st_size) % kPageSize != 0)
        return false;
    // A cheap look first, without mapping: most files are not garbage.
    Trailer head{};
    const off_t at = st.st_size - static_cast<off_t>(kTrailerSize);
    if (::pread(fd.get(), &head, sizeof head, at) != static_cast<ssize_t>(sizeof head) || head.magic != kTrailerMagic ||
        head.version != kTrailerVersion || !head.auto_unlink || head.unlinked)
        return false;
    for (const auto& slot : head.slots) {
        if (slot.pid != 0 && counts(slot, ending)) return false;
    }
    // Then for real, under the segment's lock: an attacher may be taking a slot right now.
    MappedRegion m;
    try {
        m = map_file(fd.get(), static_cast<std::size_t>(st.st_size), "sweeping shared memory '" + name + "'");
    } catch (...) {
        return false;
    }
    fd.reset();
    bool removed = false;
    if (Trailer* t = trailer_of(m)) {
        try {
            const MutexStateGuard guard = lock_trailer(*t, "sweeping shared memory '" + name + "'");
            if (!t->unlinked && prune(*t, ending) == 0) {
                t->unlinked = 1;
                unlink_if_same(name, t->segment_id);
                removed = true;
            }
        } catch (...) {
        }
    }
    return removed;
}

int sweep(const ProcessIdentity* ending) {
    // Hidden files are not SharedMemory's, except its creations in progress.
    const auto names = dev_shm_names([](const char* name) {
        if (is_buffer_name(name)) return false;
        return name[0] != '.' || std::strncmp(name, kTemporaryPrefix, std::strlen(kTemporaryPrefix)) == 0;
    });
    int removed = 0;
    for (const auto& name : names) removed += sweep_one(name.c_str(), ending) ? 1 : 0;
    return removed;
}

}  // namespace

}  // namespace mproc::detail

namespace mproc {

SharedMemory::SharedMemory(SharedMemoryOptions options) {
    if (options.size < 0) throw UsageError("'size' must be a positive integer");
    if (options.create && options.size == 0) throw UsageError("'size' must be a positive number different from zero");
    if (!options.create && options.name.empty()) throw UsageError("'name' can only be None if create=True");
    if (options.size > (std::int64_t{1} << 46))
        throw OSError(options.create ? "creating shared memory" : "attaching shared memory", ENOMEM);
    detail::prepare_process();
    sweep_shared_memory();
    track_ = options.track;
    if (options.create) {
        const auto size = static_cast<std::size_t>(options.size);
        if (options.name.empty()) {
            for (;;) {
                std::string name = detail::random_name();
                try {
                    attachment_ = detail::create_segment(name, size, options.track);
                } catch (const OSError& e) {
                    if (e.code().value() == EEXIST) continue;
                    throw;
                }
                name_ = std::move(name);
                break;
            }
        } else {
            name_ = detail::checked_name(std::move(options.name), "creating");
            attachment_ = detail::create_segment(name_, size, options.track);
        }
        size_ = size;
    } else {
        name_ = detail::checked_name(std::move(options.name), "attaching");
        attachment_ = detail::attach_segment(name_, options.track, size_);
    }
}

std::span<std::byte> SharedMemory::buf() const {
    if (!attachment_) throw UsageError("shared memory '" + name_ + "' is closed");
    return {attachment_->data(), size_};
}

void SharedMemory::close() noexcept { attachment_.reset(); }

void SharedMemory::unlink() {
    if (attachment_) {
        attachment_->unlink();
        return;
    }
    // Python's order, close() then unlink(), works by name.
    if (name_.empty()) throw UsageError("this SharedMemory has no name");
    detail::unlink_by_name(name_);
}

std::string SharedMemory::repr() const {
    return "SharedMemory('" + name_ + "', size=" + std::to_string(size_) + ")";
}

int sweep_shared_memory() { return detail::sweep(nullptr) + detail::sweep_shared_buffers(); }

}  // namespace mproc
