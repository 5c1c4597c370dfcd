// Buffers handed over by name between processes (shared_buffer.hpp).
//
// A buffer is the file /dev/shm/psb_<16 hex digits>: a header page, then the bytes. The header's
// state says who keeps the file: its owner while it is held, its sender and the sender's parent
// while it is in transit; a sweep removes a file whose keepers have all ended. State changes
// happen under the header's robust mutex, so a sweep never removes a buffer that a receiver is
// taking over, and a receiver never takes over one that a sweep is removing. A buffer is created
// under a temporary name of SharedMemory's kind (.mproc-new-<pid>-<start time>-<random>), complete
// with its owner, and only then linked under its name (dev_shm.hpp); the SharedMemory sweep
// removes a temporary file whose creator died.
#include "mproc/shared_buffer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/identity.hpp"
#include "base/lifecycle.hpp"
#include "base/mapping.hpp"
#include "base/mutex_state.hpp"
#include "base/mutex_state_guard.hpp"
#include "base/unique_fd.hpp"
#include "mproc/detail/codec_handover.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"
#include "mproc/shared_memory.hpp"
#include "shm/dev_shm.hpp"
#include "shm/shared_buffer_sweep.hpp"

namespace mproc::detail {
namespace {

constexpr std::size_t kPageSize = 4096;
constexpr std::size_t kHeaderSize = kPageSize;
constexpr std::uint64_t kHeaderMagic = 0x6d70726f632d6266ULL;  // "mproc-bf"
constexpr std::uint32_t kHeaderVersion = 1;
constexpr std::uint64_t kMaxSize = std::uint64_t{1} << 46;

enum class BufferState : std::uint32_t {
    held = 1,        // `owner` keeps it
    in_transit = 2,  // `keepers` keep it until a receiver takes it over
    removed = 3,     // dropped or swept: the name is going (or gone)
};

struct BufferHeader {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t header_size;
    std::uint64_t data_size;
    std::uint64_t segment_id;  // random: tells this segment from a later one of the same name
    MutexState lock;           // guards what follows
    BufferState state;
    std::uint32_t keeper_count;
    std::uint64_t ticket;  // handovers so far: a message names the one it carries
    ProcessIdentity owner;
    ProcessIdentity keepers[2];  // in transit: the sender and the process that started it
};
static_assert(sizeof(BufferHeader) <= kHeaderSize);

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::string path_of(const std::string& name) { return dev_shm_path(name); }

bool same_process(const ProcessIdentity& a, const ProcessIdentity& b) {
    return a.pid == b.pid && a.start_time == b.start_time;
}

// Whether `who` still keeps a buffer; `ending`: a process in its exit sequence, counted as ended.
bool keeps(const ProcessIdentity& who, const ProcessIdentity* ending) {
    if (who.pid == 0) return false;
    if (ending != nullptr && same_process(who, *ending)) return false;
    return process_alive(who);
}

// Whether nobody keeps the buffer any more. Header locked (or a snapshot, for a first look).
bool abandoned(const BufferHeader& h, const ProcessIdentity* ending) {
    switch (h.state) {
        case BufferState::held:
            return !keeps(h.owner, ending);
        case BufferState::in_transit:
            for (std::uint32_t i = 0; i < h.keeper_count && i < 2; ++i)
                if (keeps(h.keepers[i], ending)) return false;
            return true;
        case BufferState::removed:
            return true;  // its remover died before the unlink
    }
    return false;
}

// `what` names the operation, for the error. EOWNERDEAD (the previous holder died inside its
// critical section) needs no repair: every critical section makes `state` its last store, and the
// fields it changes before that are the dying process's own part (the owner it was giving up, the
// keepers of a buffer it was taking over), so a half-made change at worst makes the buffer look
// abandoned by the process that died, and the next sweep removes it, as it would have anyway.
MutexStateGuard lock_header(BufferHeader& h, const std::string& what) {
    const int rc = raw_mutex_acquire(h.lock, kForever);
    if (rc != 0 && rc != EOWNERDEAD) throw OSError(what + " (locking its header)", rc);
    return MutexStateGuard(h.lock, std::adopt_lock);
}

// The last store of a critical section; release: the sweep's first look, without the lock, sees
// the fields that the state gives a meaning to.
void release_store_state(BufferHeader& h, BufferState state) noexcept {
    std::atomic_ref<BufferState>(h.state).store(state, std::memory_order_release);
}

// The identity of the process that started the calling one; nobody (pid 0) in a main program, and
// when that process has ended (its pid may belong to a process started after this one by now).
ProcessIdentity parent_identity() {
    ProcessIdentity parent;
    const int pid = parent_process_pid();
    if (pid <= 0) return parent;
    const std::uint64_t start_time = process_start_time(pid);
    if (start_time == 0 || start_time > self_identity().start_time) return parent;
    parent.pid = pid;
    parent.start_time = start_time;
    return parent;
}

int sweep_buffers(const ProcessIdentity* ending);

// A sweep reads every file of /dev/shm (about 6 µs each): run at every creation, it would make a
// program that creates many buffers pay for every other program's files each time. So a creation
// sweeps at most once per interval in a process; a creation that finds /dev/shm full sweeps again
// at once (SharedBuffer's constructor).
constexpr std::int64_t kCreationSweepIntervalNs = 100'000'000;

void sweep_before_creating() {
    static std::atomic<std::int64_t> last_sweep{std::numeric_limits<std::int64_t>::min() / 2};
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
    std::int64_t last = last_sweep.load(std::memory_order_relaxed);
    if (now - last < kCreationSweepIntervalNs) return;
    if (!last_sweep.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;  // another thread sweeps
    sweep_shared_memory();
}

// Once per process: the sweep at the end of its exit sequence, which removes what it still owns.
void prepare_process() {
    static std::atomic<pid_t> registered_in{0};
    const pid_t self = ::getpid();
    if (registered_in.exchange(self) != self) {
        at_exit(ExitPhase::after_children, [] {
            try {
                const ProcessIdentity me = fresh_self_identity();
                sweep_buffers(&me);
            } catch (...) {
            }
        });
    }
}

}  // namespace

// One process's mapping of a buffer: the header page and the bytes. `owner_ticket`: the ticket
// under which this mapping's process became the owner; the header's owner is a process, and a
// forked child that inherited this mapping and later received the same buffer through a message
// is that owner again, under a later ticket: the inherited mapping must not act as the owner.
class BufferMapping {
public:
    BufferMapping(std::string name, MappedRegion mapping, std::size_t size, std::uint64_t owner_ticket)
        : name_(std::move(name)), mapping_(std::move(mapping)), size_(size), owner_ticket_(owner_ticket) {}
    BufferMapping(const BufferMapping&) = delete;
    BufferMapping& operator=(const BufferMapping&) = delete;
    // The owner removes the name; an inherited copy (a forked child's) only unmaps.
    ~BufferMapping() {
        if (!mapping_) return;
        try {
            const std::string path = path_of(name_);
            bool remove = false;
            {
                const MutexStateGuard guard = lock_header(header(), "dropping shared buffer '" + name_ + "'");
                if (owns(header())) {
                    release_store_state(header(), BufferState::removed);
                    remove = true;
                }
            }
            if (remove) ::unlink(path.c_str());
        } catch (...) {
        }
    }

    BufferHeader& header() const noexcept { return *reinterpret_cast<BufferHeader*>(mapping_.bytes()); }
    std::byte* data() const noexcept { return mapping_.bytes() + kHeaderSize; }
    std::size_t size() const noexcept { return size_; }
    const std::string& name() const noexcept { return name_; }
    void adopt(MappedRegion mapping) noexcept { mapping_ = std::move(mapping); }

    // The sender's first step: in transit from now on, kept by this process and its parent. The
    // mapping stays until the message has left (sent) or the handover is undone (roll_back).
    BufferHandover hand_over() {
        const std::string what = "handing over shared buffer '" + name_ + "'";
        BufferHeader& h = header();
        const ProcessIdentity self = self_identity();
        const ProcessIdentity parent = parent_identity();  // reads /proc: not under the lock
        const MutexStateGuard guard = lock_header(h, what);
        if (!owns(h))
            throw UsageError(what + ": this process does not own it (it is in transit, or this handle was inherited "
                                    "through fork and belongs to the process that owned it then)");
        h.keepers[0] = self;
        h.keepers[1] = parent;
        h.keeper_count = h.keepers[1].pid != 0 ? 2 : 1;
        h.owner = ProcessIdentity{};
        h.ticket += 1;
        pending_ticket_ = h.ticket;
        release_store_state(h, BufferState::in_transit);
        return BufferHandover{name_, h.segment_id, h.ticket, h.data_size};
    }

    // Undoes hand_over() after a failed put or send: held by this process again, if the buffer is
    // still in transit under the ticket this process gave it. The ticket stays where it is, so a
    // message that left after all is refused ("received already"). False when somebody took the
    // buffer over meanwhile (the message left) or a sweep removed it: the handle is then empty.
    bool roll_back() noexcept {
        try {
            BufferHeader& h = header();
            const ProcessIdentity self = self_identity();
            const MutexStateGuard guard = lock_header(h, "taking back shared buffer '" + name_ + "'");
            if (h.state != BufferState::in_transit || h.ticket != pending_ticket_ || !same_process(h.keepers[0], self))
                return false;
            h.owner = self;
            h.keeper_count = 0;
            h.keepers[0] = h.keepers[1] = ProcessIdentity{};
            owner_ticket_ = pending_ticket_;
            release_store_state(h, BufferState::held);
            return true;
        } catch (...) {
            return false;
        }
    }

private:
    bool owns(const BufferHeader& h) const {
        return h.state == BufferState::held && h.ticket == owner_ticket_ && same_process(h.owner, self_identity());
    }

    std::string name_;
    MappedRegion mapping_;
    std::size_t size_;
    std::uint64_t owner_ticket_;
    std::uint64_t pending_ticket_ = 0;
};

namespace {

std::unique_ptr<BufferMapping> create_buffer(std::size_t size) {
    char name[32];
    std::snprintf(name, sizeof name, "%s%016llx", kBufferNamePrefix,
                  static_cast<unsigned long long>(random_u64("creating a shared buffer")));
    const std::size_t total = kHeaderSize + round_up(size, kPageSize);
    FileInTheMaking file(total,
                         std::string("creating shared buffer '") + name + "' of " + std::to_string(size) + " bytes");
    auto* h = new (file.bytes()) BufferHeader{};
    try {
        mutex_init(&h->lock, false);
    } catch (const OSError& e) {
        file.fail(e.code().value(), "pthread_mutex_init");
    }
    h->version = kHeaderVersion;
    h->header_size = kHeaderSize;
    h->data_size = size;
    h->segment_id = random_u64("creating a shared buffer");
    h->owner = self_identity();
    h->ticket = 0;
    h->state = BufferState::held;
    h->magic = kHeaderMagic;
    // Allocated before the name exists: once published, nothing may throw before the handle owns it.
    auto mapping = std::make_unique<BufferMapping>(name, MappedRegion{}, size, 0);
    mapping->adopt(file.publish(name));
    return mapping;
}

[[noreturn]] void decode_failure(const std::string& name, const std::string& cause) {
    throw DecodeError("mproc codec: shared buffer '" + name + "' " + cause);
}

std::unique_ptr<BufferMapping> take_over_buffer(const BufferHandover& handover) {
    const std::string& name = handover.name;
    if (!is_buffer_name(name))
        throw DecodeError("mproc codec: malformed SharedBuffer: '" + name +
                          "' is not a shared buffer's name (psb_ and " + std::to_string(kBufferNameDigits) +
                          " hex digits)");
    if (handover.size == 0 || handover.size > kMaxSize)
        decode_failure(name, "cannot hold the " + std::to_string(handover.size) + " bytes the message says");
    const UniqueFd fd(::open(path_of(name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) {
        if (errno == ENOENT)
            decode_failure(name, "no longer exists (received already, dropped, or removed after its sender and the "
                                 "sender's parent ended)");
        // This process's or the system's limits, not the message: the message is consumed, but the
        // cause is the receiver's to fix, and the buffer stays in transit (kept by its sender).
        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
            throw OSError("receiving shared buffer '" + name + "' (open)", errno);
        decode_failure(name, std::string("cannot be opened: ") + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) decode_failure(name, "is not a regular file");
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    if (file_size < kHeaderSize)
        decode_failure(name, "is not a shared buffer (a file of " + std::to_string(file_size) + " bytes)");
    MappedRegion m = MappedRegion::map_shared(fd.get(), static_cast<std::size_t>(file_size),
                                              ("receiving shared buffer '" + name + "' (mmap)").c_str());
    auto& h = *reinterpret_cast<BufferHeader*>(m.bytes());
    if (h.magic != kHeaderMagic || h.version != kHeaderVersion || h.header_size != kHeaderSize)
        decode_failure(name, "is not a shared buffer (no buffer header)");
    if (h.segment_id != handover.segment_id)
        decode_failure(name, "is not the one the message names (another buffer of that name)");
    if (h.data_size != handover.size || kHeaderSize + round_up(h.data_size, kPageSize) != file_size)
        decode_failure(name, "holds " + std::to_string(h.data_size) + " bytes, the message says " +
                                 std::to_string(handover.size));
    // Allocated before the buffer becomes this process's: nothing may throw after that.
    auto mapping = std::make_unique<BufferMapping>(name, MappedRegion{}, static_cast<std::size_t>(h.data_size),
                                                   handover.ticket);
    {
        const ProcessIdentity self = self_identity();
        const MutexStateGuard guard = lock_header(h, "receiving shared buffer '" + name + "'");
        if (h.state == BufferState::removed) decode_failure(name, "no longer exists (dropped, or removed by a sweep)");
        if (h.state != BufferState::in_transit || h.ticket != handover.ticket)
            decode_failure(name, "was received already (a message can be decoded once)");
        h.owner = self;
        h.keeper_count = 0;
        h.keepers[0] = h.keepers[1] = ProcessIdentity{};
        release_store_state(h, BufferState::held);
    }
    mapping->adopt(std::move(m));
    return mapping;
}

// The sweep's verdict on one entry of /dev/shm; true if it removed it.
bool sweep_one(const std::string& name, const ProcessIdentity* ending) {
    const std::string path = path_of(name);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd) return false;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) < kHeaderSize)
        return false;
    // A look without the lock first: most buffers are kept.
    BufferHeader head{};
    if (::pread(fd.get(), &head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) || head.magic != kHeaderMagic ||
        head.version != kHeaderVersion || !abandoned(head, ending))
        return false;
    MappedRegion m;
    try {
        m = MappedRegion::map_shared(fd.get(), kHeaderSize, ("sweeping shared buffer '" + name + "'").c_str());
    } catch (...) {
        return false;
    }
    auto& h = *reinterpret_cast<BufferHeader*>(m.bytes());
    // Without waiting: a process stopped (SIGSTOP, a debugger) inside a header's critical section
    // must not stall every creation on the machine. A busy buffer is somebody's now anyway; the
    // next sweep looks again.
    const int rc = raw_mutex_acquire(h.lock, 0);
    if (rc != 0 && rc != EOWNERDEAD) return false;
    try {
        const MutexStateGuard guard(h.lock, std::adopt_lock);
        if (!abandoned(h, ending)) return false;
        release_store_state(h, BufferState::removed);
    } catch (...) {
        return false;
    }
    // Still this file under that name (names are random, but a file can be replaced by hand)?
    struct stat now {};
    if (::stat(path.c_str(), &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) return false;
    return ::unlink(path.c_str()) == 0;
}

int sweep_buffers(const ProcessIdentity* ending) {
    int removed = 0;
    for (const auto& name : dev_shm_names([](const char* name) { return is_buffer_name(name); }))
        removed += sweep_one(name, ending) ? 1 : 0;
    return removed;
}

}  // namespace

int sweep_shared_buffers() { return sweep_buffers(nullptr); }

BufferHandover hand_over(const SharedBuffer& buffer) {
    if (!buffer.mapping_) throw UsageError("this SharedBuffer is empty (moved from, released, or handed over already)");
    BufferHandover handover = buffer.mapping_->hand_over();
    try {
        HandoverTransaction::enlist(&buffer, [](const void* subject, bool sent) noexcept {
            const auto& handle = *static_cast<const SharedBuffer*>(subject);
            if (sent || !handle.mapping_->roll_back()) handle.mapping_.reset();
        });
    } catch (...) {
        if (!buffer.mapping_->roll_back()) buffer.mapping_.reset();
        throw;
    }
    return handover;
}

SharedBuffer take_over(const BufferHandover& handover) {
    prepare_process();
    return SharedBuffer(take_over_buffer(handover));
}

}  // namespace mproc::detail

namespace mproc {

SharedBuffer::SharedBuffer() noexcept = default;

SharedBuffer::SharedBuffer(std::size_t size) {
    if (size == 0) throw UsageError("a SharedBuffer needs a size of at least one byte");
    if (size > detail::kMaxSize)
        throw OSError("creating a shared buffer of " + std::to_string(size) + " bytes", ENOMEM);
    detail::prepare_process();
    detail::sweep_before_creating();
    try {
        mapping_ = detail::create_buffer(size);
    } catch (const OSError& e) {
        if (e.code().value() != ENOSPC) throw;
        sweep_shared_memory();  // what dead programs left may be what fills /dev/shm
        mapping_ = detail::create_buffer(size);
    }
}

SharedBuffer::SharedBuffer(std::unique_ptr<detail::BufferMapping> mapping) noexcept : mapping_(std::move(mapping)) {}
SharedBuffer::SharedBuffer(SharedBuffer&& other) noexcept = default;
SharedBuffer& SharedBuffer::operator=(SharedBuffer&& other) noexcept = default;
SharedBuffer::~SharedBuffer() = default;

std::span<std::byte> SharedBuffer::span() const {
    if (!mapping_) throw UsageError("this SharedBuffer is empty (moved from, released, or handed over)");
    return {mapping_->data(), mapping_->size()};
}

std::byte* SharedBuffer::data() const noexcept { return mapping_ ? mapping_->data() : nullptr; }
std::size_t SharedBuffer::size() const noexcept { return mapping_ ? mapping_->size() : 0; }

const std::string& SharedBuffer::name() const noexcept {
    static const std::string none;
    return mapping_ ? mapping_->name() : none;
}

void SharedBuffer::release() noexcept { mapping_.reset(); }

}  // namespace mproc
