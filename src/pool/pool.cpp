// The pool's dispatcher and its workers.
//
// One thread (the dispatcher) owns every worker: it starts them (so that their parent-death
// signal is tied to a thread that lives exactly as long as the pool), feeds them chunks through a
// link each (pool/worker_link.hpp: two byte rings in shared memory, and a socketpair for doorbells
// and ends), collects their results, and watches their sentinels. Its state machine:
//
//   running  --close()-->     closing (no new tasks; STOP to each worker once all work is done)
//   running  --terminate()--> terminating (kill the workers, fail what is unfinished)
//   closing / terminating --every worker reaped--> finished (the thread ends; join() returns)
//
// While answers are due the dispatcher spins on the rings (and on submit()'s flag) rather than
// sleep; when it sleeps it polls the wake eventfd, every worker's doorbell socket and sentinel,
// having said so first, so that a worker or submit() rings only then.
//
// Two shortcuts spare wake-ups while the dispatcher sleeps or spins (it then gives up
// core_mutex_, which guards its state): submit() writes the tasks into the links itself, and a
// thread waiting for a result collects the answers itself (collect_until), sleeping on the pool's
// waiter word, which the workers wake. The dispatcher takes core_mutex_ back whenever it wakes
// (lock_core), waking such a waiter first; answers whose sinks run callbacks are left to it.
//
// Frames on a link: a u8 kind, then the kind's fields:
//   to the worker:   DEFINE site-id, entry code reference, optional function code reference
//                    TASK   task-id, site-id, the chunk's encoded inputs
//                    STOP
//   from the worker: RESULT task-id, the chunk's encoded results
//                    ERROR  task-id, exception type name, message
// A worker runs its tasks in the order received and answers in batches. Which task it is running
// is in a word of shared memory it writes before and after each task (no system call); when a
// worker dies, that task fails and every other task sent to it and not answered (not started, or
// finished with the answer unpublished) goes to the other workers.
#include "mproc/pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <unordered_map>

#include "mproc/detail/code_ref.hpp"
#include "mproc/detail/descriptors.hpp"
#include "mproc/detail/shared_block.hpp"
#include "mproc/logging.hpp"
#include "process/portable_call.hpp"
#include "process/process_access.hpp"
#include "base/descriptor_transfer.hpp"
#include "base/unique_fd.hpp"
#include "process/runtime.hpp"
#include "base/futex.hpp"
#include "pool/worker_link.hpp"

namespace mproc {
namespace detail {

namespace {
// How often a busy dispatcher, which takes results without sleeping, still looks at the workers'
// sentinels and the task deadlines.
constexpr auto kBusyPollInterval = std::chrono::milliseconds(1);
// A worker publishes its answers after this many tasks at most, or after this long.
constexpr int kAnswerBatch = 32;
constexpr std::int64_t kLongestUnanswered = 2'000'000;  // ns
}  // namespace

enum class FrameKind : std::uint8_t { define = 1, task = 2, stop = 3, result = 4, error = 5 };

// What a worker needs besides its socket; an argument of the worker's Process.
struct WorkerSettings {
    int maxtasks = 0;                     // 0: no limit
    bool answer_each = false;             // send each result at once (task timeouts measure from it)
    PortableCall initializer;
    int inherited_parent_end = -1;        // fork: the pool's end of the socket, copied into the worker

    template <class Archive>
    void serialize(Archive& ar) {
        ar(maxtasks, answer_each, initializer, inherited_parent_end);
    }
};

// The worker's end of its socket and its link block (worker_link.hpp); both travel to
// spawn/forkserver workers with the start request, the block as every shared block does.
struct WorkerChannel {
    int fd = -1;
    SharedBlock link;
    SharedBlock waiter;  // the pool's WaiterWord
    template <class Archive>
    void save(Archive& ar) const {
        ar(DescriptorRef{fd, "a pool worker's doorbell socket"});
        save_shared_block(ar, link, "a pool worker's link");
        save_shared_block(ar, waiter, "a pool's waiter word");
    }
    template <class Archive>
    void load(Archive& ar) {
        DescriptorRef channel;
        ar(channel);
        fd = channel.fd;
        link = load_shared_block(ar, BlockKind::pool_link);
        check_link_block(link);
        waiter = load_shared_block(ar, BlockKind::pool_waiter);
    }
};

// CLOCK_MONOTONIC_COARSE: the time of the last tick, read without a system call or a clock read.
std::int64_t coarse_monotonic_ns() {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

std::int64_t monotonic_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

namespace {

// Appends a frame to the link's output: the kind, then what `body` encodes.
template <class Body>
void append_frame(WorkerLink& link, FrameKind kind, Body&& body) {
    const std::size_t mark = link.begin_frame();
    std::vector<std::byte>& out = link.output();
    out.push_back(static_cast<std::byte>(kind));
    Encoder encoder(out);
    body(encoder);
    link.end_frame(mark);
}

// Takes the complete frames out of the link's input; calls `handle(kind, payload)` for each.
template <class Handler>
void drain_frames(WorkerLink& link, Handler&& handle) {
    while (const auto frame = link.next_frame()) {
        if (frame->empty()) throw DecodeError("pool link: empty frame");
        handle(static_cast<FrameKind>((*frame)[0]), frame->subspan(1));
    }
}

}  // namespace

// The worker process: run the initializer, then tasks until STOP, end of file, or maxtasks.
void pool_worker_main(WorkerChannel channel, WorkerSettings settings) {
    if (settings.inherited_parent_end >= 0) close_fd(settings.inherited_parent_end);
    // `channel` keeps the block mapped.
    WorkerLink link(channel.link, WorkerLink::Side::worker, channel.fd);
    link.set_waiter(channel.waiter.as<WaiterWord>());
    ProgressWord& running = link.progress();
    settings.initializer();
    struct Site {
        ChunkEntry entry = nullptr;
        const void* function = nullptr;
    };
    std::vector<Site> sites;
    int done = 0;
    bool stop = false;
    // Publishes the answers, waiting for room; false when the pool has gone.
    const auto answer = [&link] {
        while (!link.flush())
            if (!link.wait(false, true)) return false;
        return true;
    };
    std::int64_t last_answer = coarse_monotonic_ns();
    int unanswered = 0;
    while (!stop) {
        if (!link.wait(true, false)) break;  // the pool is gone
        link.take_incoming();
        drain_frames(link, [&](FrameKind kind, std::span<const std::byte> payload) {
            if (stop) return;
            Decoder d(payload);
            if (kind == FrameKind::define) {
                const auto id = d.read_varint();
                auto entry = d.read<CodeRef>();
                auto function = d.read<std::optional<CodeRef>>();
                if (sites.size() <= id) sites.resize(id + 1);
                sites[id].entry = resolve_function<void(const void*, Decoder&, Encoder&)>(entry);
                sites[id].function = function ? resolve_code_ref(*function) : nullptr;
                return;
            }
            if (kind == FrameKind::stop) {
                stop = true;
                return;
            }
            if (kind != FrameKind::task) throw DecodeError("pool link: unexpected frame for a worker");
            const auto task_id = d.read<std::uint64_t>();
            const auto site_id = d.read_varint();
            if (site_id >= sites.size() || sites[site_id].entry == nullptr)
                throw DecodeError("pool link: task for an unknown call site");
            const std::size_t mark = link.output().size();
            std::exception_ptr error;
            // Release: the dispatcher, reading the word after this process died, must not see a
            // task as running before the frames that preceded it were handled here.
            // When the task began matters only to task_timeout, whose workers answer each task.
            if (settings.answer_each) running.started_ns.store(monotonic_ns(), std::memory_order_relaxed);
            running.task.store(task_id, std::memory_order_release);
            try {
                append_frame(link, FrameKind::result, [&](Encoder& e) {
                    e.write(task_id);
                    Decoder args(d.read_bytes(d.remaining()));
                    sites[site_id].entry(sites[site_id].function, args, e);
                });
            } catch (const SystemExit&) {
                throw;
            } catch (...) {
                error = std::current_exception();
            }
            if (error) {
                link.discard_frame(mark);
                std::string message;
                std::string type = exception_type_name(error, message);
                append_frame(link, FrameKind::error, [&](Encoder& e) {
                    e.write(task_id);
                    e.write(type);
                    e.write(message);
                });
            }
            running.task.store(0, std::memory_order_release);
            ++done;
            ++unanswered;
            // Answer in batches while tasks are short, but never sit on an answer for long: a
            // finished task whose answer dies with the worker is run again elsewhere. Batches
            // stay small enough that the dispatcher refills this worker's ring before it runs dry.
            // The coarse clock costs a few nanoseconds, and its few milliseconds of resolution
            // are enough here.
            const std::int64_t now = coarse_monotonic_ns();
            if (settings.answer_each || unanswered >= kAnswerBatch || link.input_empty() ||
                now - last_answer > kLongestUnanswered) {
                if (!answer()) stop = true;
                last_answer = now;
                unanswered = 0;
            }
            if (settings.maxtasks > 0 && done >= settings.maxtasks) {
                get_logger().debug("worker exiting after {} tasks", done);
                stop = true;
            }
        });
        if (link.output_pending() && !answer()) break;
    }
    if (link.output_pending()) answer();
}

namespace {
// Fails a task; an exception from its error callback is logged (the pool goes on).
void fail_task(ChunkTask& task, const std::exception_ptr& error) {
    try {
        task.sink->fail(task.chunk, error);
    } catch (...) {
        get_logger().error("a pool error callback raised an exception");
    }
}
}  // namespace

bool pool_spin_pays() noexcept { return spinning_pays(); }

void log_callback_failure(const char* what) { get_logger().error("a pool callback raised: {}", what); }

// ---------------------------------------------------------------------------------------------

struct CallSiteHash {
    std::size_t operator()(const CallSite& s) const noexcept {
        return std::hash<const void*>()(s.entry) * 31 + std::hash<const void*>()(s.function);
    }
};

class WaitGate;

class PoolCore {
public:
    PoolCore(PoolOptions options);
    ~PoolCore();

    void submit(std::vector<ChunkTask> tasks);
    void close();
    void terminate();
    void join();
    std::vector<Process> workers() const;
    bool running() const {
        std::lock_guard lock(mutex_);
        return state_ == State::running;
    }

    int processes = 0;
    StartMethod method = StartMethod::fork;
    std::weak_ptr<WaitHelper> wait_helper() const noexcept;

private:
    enum class State { running, closing, terminating, finished };

    struct Worker {
        // Built from the started Process: a default-constructed one would take a number from the
        // process counter, and worker names must be consecutive (ForkPoolWorker-1, -2, ...).
        explicit Worker(Process started) : process(std::move(started)) {}
        Process process;
        int fd = -1;
        WorkerLink link;  // over `block`, with fd for doorbells
        ProgressWord* running = nullptr;
        std::deque<std::uint64_t> inflight;
        std::vector<bool> knows_site;
        int sent = 0;
        int answered = 0;
        bool eof = false;  // the worker closed its end; only its sentinel matters now
        bool stop_sent = false;
        bool timed_out = false;
        UniqueFd owned_fd;     // owns fd
        SharedBlock block;     // the link's rings and progress word
    };

    struct SiteInfo {
        CodeRef entry;
        std::optional<CodeRef> function;
    };

    void run();
    void start_worker();
    // Takes the worker's answers and delivers them; for a waiter (collect_until), stops before an
    // answer whose sink runs callbacks and returns false.
    bool on_worker_readable(Worker& w, bool for_waiter = false);
    // Takes core_mutex_ for the dispatcher thread, waking a waiter that holds it.
    void lock_core(std::unique_lock<std::mutex>& core);
    // Whether chunks may still go to the workers (not after terminate()).
    bool dispatching_allowed() const;
    void on_worker_ended(std::size_t index);
    void dispatch();
    void replace_workers(State state);
    std::size_t workers_taking_tasks() const;
    std::optional<std::chrono::steady_clock::time_point> task_deadline(Worker& w,
                                                                       std::chrono::steady_clock::time_point now) const;
    void flush(Worker& w);
    // Rings the eventfd the dispatcher polls.
    void wake();
    // Whether tasks were submitted, a worker published results, or a ring has room for output
    // that waits: what the dispatcher spins and sleeps for.
    bool work_arrived() const noexcept;
    // Moves the submitted tasks to pending_; under mutex_.
    void take_incoming();
    // Lowers the flags the dispatcher raised before sleeping.
    void disarm() noexcept;
    // A waiting caller collects answers itself (WaitHelper, through gate_).
    friend class WaitGate;
    void collect_until(const std::atomic<bool>& ready, std::chrono::steady_clock::time_point until);
    // submit()'s shortcut: the tasks go to the workers from the calling thread when the
    // dispatcher sleeps (or spins). True when they all went (the dispatcher need not wake).
    bool dispatch_inline();
    void fail_pending(const std::exception_ptr& error);
    void fail_everything(const std::exception_ptr& error);
    std::uint32_t site_id(const CallSite& site);
    std::size_t window() const;

    PoolOptions options_;
    PortableCall initializer_;

    mutable std::mutex mutex_;  // guards state_, incoming_, worker_handles_
    std::condition_variable started_;
    State state_ = State::running;
    std::deque<ChunkTask> incoming_;
    std::vector<Process> worker_handles_;
    std::exception_ptr start_error_;
    bool workers_started_ = false;

    UniqueFd wake_fd_;
    std::thread thread_;
    // Tasks wait in incoming_ (set under mutex_); the dispatcher sleeps in poll() (it said so
    // before its last look). Together they spare submit() the eventfd while the dispatcher runs.
    std::atomic<bool> incoming_ready_{false};
    std::atomic<bool> sleeping_{false};
    // Held by the dispatcher thread while it works (not while it spins or sleeps), and by
    // submit() while it writes tasks to the links itself: guards the dispatcher-thread state below.
    std::mutex core_mutex_;
    // A thread in collect_until() holds core_mutex_: the dispatcher raises this to get it back.
    std::atomic<bool> dispatcher_wants_core_{false};
    std::atomic<bool> waiter_active_{false};  // a thread is in collect_until()
    SpinBudget waiter_spin_;
    SharedBlock waiter_block_;
    WaiterWord* waiter_ = nullptr;
    std::shared_ptr<WaitGate> gate_;

    // Dispatcher-thread state.
    std::vector<std::unique_ptr<Worker>> workers_;
    std::deque<ChunkTask> pending_;
    std::unordered_map<std::uint64_t, ChunkTask> running_tasks_;
    std::uint64_t next_task_id_ = 1;
    std::unordered_map<CallSite, std::uint32_t, CallSiteHash> site_ids_;
    std::optional<std::pair<CallSite, std::uint32_t>> last_site_;
    std::vector<pollfd> poll_fds_;
    std::vector<bool> room_wanted_;
    SpinBudget spin_;
    std::vector<SiteInfo> sites_;
    // Workers that died before answering any task, in a row: a failing initializer, say. Past a
    // limit the pool gives up instead of starting processes forever.
    int early_deaths_ = 0;
    std::string last_early_death_;
};

// What results hold to reach their pool's collect_until(): it outlives the core, which it
// forgets (under its mutex) before the core goes.
class WaitGate final : public WaitHelper {
public:
    explicit WaitGate(PoolCore* core) noexcept : core_(core) {}
    void collect_until(const std::atomic<bool>& ready, std::chrono::steady_clock::time_point until) override {
        std::lock_guard lock(mutex_);
        if (core_ != nullptr) core_->collect_until(ready, until);
    }
    void forget() noexcept {
        std::lock_guard lock(mutex_);
        core_ = nullptr;
    }

private:
    std::mutex mutex_;
    PoolCore* core_;
};

std::weak_ptr<WaitHelper> PoolCore::wait_helper() const noexcept { return gate_; }

// The pools of this process, terminated by the exit sequence like Python's pool finalizer.
struct LivePools {
    std::mutex mutex;
    std::vector<std::pair<PoolCore*, int>> cores;  // with the pid that created each
    int registered_pid = 0;
};
LivePools& live_pools() {
    static auto* pools = new LivePools;  // never destroyed: the exit sequence uses it
    return *pools;
}

PoolCore::PoolCore(PoolOptions options) : options_(std::move(options)) {
    processes = options_.processes ? *options_.processes : process_cpu_count();
    if (processes < 1) throw UsageError("Number of processes must be at least 1");
    if (options_.maxtasksperchild && *options_.maxtasksperchild < 1)
        throw UsageError("maxtasksperchild must be a positive int or None");
    method = options_.context ? *options_.context : default_start_method();
    if (options_.initializer) {
        initializer_.target = options_.initializer.target();
        // Refuse a call that cannot travel now rather than in every worker; descriptors are
        // accepted here as they will be in the workers' start requests.
        std::vector<std::byte> probe;
        std::vector<int> descriptors;
        OutgoingDescriptors accept(descriptors);
        Encoder out(probe);
        initializer_.target->encode_portable(out);
    }
    waiter_block_ = allocate_shared_block(BlockKind::pool_waiter, sizeof(WaiterWord), alignof(WaiterWord));
    waiter_ = new (waiter_block_.payload()) WaiterWord{};
    gate_ = std::make_shared<WaitGate>(this);
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_) throw OSError("eventfd", errno);
    {
        LivePools& pools = live_pools();
        std::lock_guard lock(pools.mutex);
        pools.cores.emplace_back(this, ::getpid());
        if (pools.registered_pid != ::getpid()) {
            pools.registered_pid = ::getpid();
            at_exit(ExitPhase::before_children, [] {
                std::vector<PoolCore*> mine;
                {
                    LivePools& p = live_pools();
                    std::lock_guard l(p.mutex);
                    for (auto& [core, pid] : p.cores)
                        if (pid == ::getpid()) mine.push_back(core);
                }
                for (PoolCore* core : mine) {
                    get_logger().debug("finalizing pool");
                    core->terminate();
                    core->join();
                }
            });
        }
    }
    thread_ = std::thread([this] { run(); });
    std::unique_lock lock(mutex_);
    started_.wait(lock, [this] { return workers_started_; });
    if (start_error_) {
        state_ = State::terminating;
        lock.unlock();
        wake();
        thread_.join();
        wake_fd_.reset();
        LivePools& pools = live_pools();
        std::lock_guard pools_lock(pools.mutex);
        std::erase_if(pools.cores, [this](const auto& entry) { return entry.first == this; });
        std::rethrow_exception(start_error_);
    }
}

PoolCore::~PoolCore() {
    terminate();  // wakes the dispatcher, which takes the core back from a waiter collecting
    gate_->forget();
    join();
    LivePools& pools = live_pools();
    std::lock_guard lock(pools.mutex);
    std::erase_if(pools.cores, [this](const auto& entry) { return entry.first == this; });
}

void PoolCore::submit(std::vector<ChunkTask> tasks) {
    {
        std::lock_guard lock(mutex_);
        if (state_ != State::running) throw UsageError("Pool not running");
        for (auto& t : tasks) incoming_.push_back(std::move(t));
        incoming_ready_.store(true, std::memory_order_relaxed);
    }
    // The calling thread writes the tasks to the workers' links itself when the dispatcher is
    // not at work: that spares waking the dispatcher, which the workers' answers wake.
    if (dispatch_inline()) return;
    // The dispatcher looks at incoming_ready_ after saying it sleeps (Dekker's handshake, as on
    // the links): a dispatcher that is awake takes the tasks without a system call here.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed)) wake();
}

void PoolCore::take_incoming() {
    if (pending_.empty()) {
        pending_.swap(incoming_);  // a map's chunks move once, not one by one
        return;
    }
    for (auto& task : incoming_) pending_.push_back(std::move(task));
    incoming_.clear();
}

bool PoolCore::work_arrived() const noexcept {
    if (incoming_ready_.load(std::memory_order_relaxed)) return true;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        if (workers_[i]->link.has_incoming()) return true;
        if (room_wanted_[i] && workers_[i]->link.has_room()) return true;
    }
    return false;
}

bool PoolCore::dispatch_inline() {
    // Only where nothing else needs the dispatcher to wake for these tasks: not on the dispatcher
    // thread (a callback submitting), and not under task_timeout (the dispatcher's poll timeout
    // must count from them).
    if (options_.task_timeout || std::this_thread::get_id() == thread_.get_id()) return false;
    std::unique_lock core(core_mutex_, std::try_to_lock);
    if (!core.owns_lock()) return false;  // the dispatcher is at work: it takes the tasks itself
    {
        std::lock_guard lock(mutex_);
        if (state_ != State::running) return false;
        incoming_ready_.store(false, std::memory_order_relaxed);
        take_incoming();
    }
    dispatch();
    // What the rings could not take, or could not be sent for want of a window, is the
    // dispatcher's to send.
    bool left = !pending_.empty();
    for (auto& w : workers_) left = left || w->link.output_pending();
    if (left) incoming_ready_.store(true, std::memory_order_relaxed);
    return !left;
}

void PoolCore::disarm() noexcept {
    sleeping_.store(false, std::memory_order_relaxed);
    for (auto& w : workers_) w->link.disarm();
}

void PoolCore::wake() {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof one);
}

void PoolCore::close() {
    {
        std::lock_guard lock(mutex_);
        if (state_ == State::running) {
            get_logger().debug("closing pool");
            state_ = State::closing;
        }
    }
    wake();
}

void PoolCore::terminate() {
    {
        std::lock_guard lock(mutex_);
        if (state_ == State::running || state_ == State::closing) {
            get_logger().debug("terminating pool");
            state_ = State::terminating;
        }
    }
    wake();
}

void PoolCore::join() {
    {
        std::lock_guard lock(mutex_);
        if (state_ == State::running) throw UsageError("Pool is still running");
    }
    get_logger().debug("joining pool");
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

std::vector<Process> PoolCore::workers() const {
    std::lock_guard lock(mutex_);
    return worker_handles_;
}

std::size_t PoolCore::window() const {
    if (options_.task_timeout) return 1;  // the running task's start is then known exactly
    const std::size_t share = pending_.size() / (2 * workers_.size() + 1);
    return std::clamp<std::size_t>(share, 1, 256);
}

std::uint32_t PoolCore::site_id(const CallSite& site) {
    // A map's chunks all come from one site: skip the hash for them.
    if (last_site_ && last_site_->first.entry == site.entry && last_site_->first.function == site.function)
        return last_site_->second;
    auto it = site_ids_.find(site);
    if (it != site_ids_.end()) {
        last_site_.emplace(site, it->second);
        return it->second;
    }
    SiteInfo info;
    info.entry = code_ref_of(site.entry);
    if (site.function != nullptr) info.function = code_ref_of(site.function);
    const auto id = static_cast<std::uint32_t>(sites_.size());
    sites_.push_back(std::move(info));
    site_ids_.emplace(site, id);
    last_site_.emplace(site, id);
    return id;
}

void PoolCore::start_worker() {
    SharedBlock block = allocate_link_block();  // zero-filled: no task running
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw OSError("socketpair", errno);
    UniqueFd parent_end(sv[0]);
    UniqueFd worker_end(sv[1]);
    WorkerSettings settings;
    settings.maxtasks = options_.maxtasksperchild.value_or(0);
    settings.answer_each = options_.task_timeout.has_value();
    settings.initializer = initializer_;
    if (method == StartMethod::fork) settings.inherited_parent_end = sv[0];
    Process process(ProcessOptions{.daemon = true, .start_method = method}, &pool_worker_main,
                    WorkerChannel{sv[1], block, waiter_block_}, settings);
    const char* prefix = method == StartMethod::fork ? "ForkPoolWorker"
                         : method == StartMethod::spawn ? "SpawnPoolWorker"
                                                        : "ForkServerPoolWorker";
    const std::string default_name = process.name();
    process.set_name(prefix + default_name.substr(default_name.find('-')));
    process.start();
    worker_end.reset();
    ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
    auto w = std::make_unique<Worker>(process);
    w->fd = sv[0];
    w->link = WorkerLink(block, WorkerLink::Side::pool, sv[0]);
    w->running = &w->link.progress();
    w->owned_fd = std::move(parent_end);
    w->block = std::move(block);
    workers_.push_back(std::move(w));
    get_logger().debug("added worker");
    std::lock_guard lock(mutex_);
    worker_handles_.clear();
    for (auto& each : workers_) worker_handles_.push_back(each->process);
}

void PoolCore::flush(Worker& w) {
    // What the ring has no room for goes when the worker has taken more; a worker that died is
    // noticed by its sentinel.
    static_cast<void>(w.link.flush());
}

void PoolCore::dispatch() {
    const int limit = options_.maxtasksperchild.value_or(0);
    bool progress = true;
    while (!pending_.empty() && progress) {
        progress = false;
        const std::size_t window_size = window();
        // The least busy worker first, so that work spreads before it piles up.
        Worker* target = nullptr;
        for (auto& w : workers_) {
            if (w->stop_sent || w->timed_out) continue;
            if (limit > 0 && w->sent >= limit) continue;
            if (w->inflight.size() >= window_size) continue;
            if (target == nullptr || w->inflight.size() < target->inflight.size()) target = w.get();
        }
        if (target == nullptr) break;
        ChunkTask task = std::move(pending_.front());
        pending_.pop_front();
        const std::uint32_t id = site_id(task.site);
        if (target->knows_site.size() <= id) target->knows_site.resize(id + 1, false);
        if (!target->knows_site[id]) {
            append_frame(target->link, FrameKind::define, [&](Encoder& e) {
                e.write_varint(id);
                e.write(sites_[id].entry);
                e.write(sites_[id].function);
            });
            target->knows_site[id] = true;
        }
        const std::uint64_t task_id = next_task_id_++;
        append_frame(target->link, FrameKind::task, [&](Encoder& e) {
            e.write(task_id);
            e.write_varint(id);
            e.write_bytes(task.arguments);
        });
        target->inflight.push_back(task_id);
        ++target->sent;
        running_tasks_.emplace(task_id, std::move(task));
        progress = true;
    }
    for (auto& w : workers_) flush(*w);
}

std::size_t PoolCore::workers_taking_tasks() const {
    const int limit = options_.maxtasksperchild.value_or(0);
    return static_cast<std::size_t>(std::ranges::count_if(workers_, [limit](const auto& w) {
        return !w->stop_sent && !w->timed_out && (limit == 0 || w->sent < limit);
    }));
}

void PoolCore::replace_workers(State state) {
    // Workers end by retiring (maxtasksperchild), dying or overrunning task_timeout. While the pool
    // is open there are always `processes` of them (Python's _maintain_pool); after close(), as
    // many as the queued tasks still need, so that none is left without a worker to run it.
    auto wanted = [&] {
        if (static_cast<int>(workers_.size()) >= processes) return false;
        return state == State::running || workers_taking_tasks() < pending_.size();
    };
    while (!start_error_ && wanted()) {
        try {
            start_worker();
        } catch (const std::exception& e) {
            get_logger().error("could not start a pool worker: {}", e.what());
            // With no worker left, nothing would ever wake this thread for the queued tasks: they
            // fail with the reason. Otherwise the next worker to end brings another try.
            if (workers_.empty()) fail_pending(std::current_exception());
            return;
        }
    }
}

std::optional<std::chrono::steady_clock::time_point> PoolCore::task_deadline(
    Worker& w, std::chrono::steady_clock::time_point now) const {
    if (!options_.task_timeout || w.inflight.empty() || w.timed_out) return std::nullopt;
    // One task in flight per worker under task_timeout. Not begun yet (the worker is starting, or
    // still reading): it cannot be overdue before now + timeout, so look again then.
    if (w.running->task.load(std::memory_order_acquire) != w.inflight.front()) return now + *options_.task_timeout;
    const std::chrono::steady_clock::time_point began{
        std::chrono::nanoseconds(w.running->started_ns.load(std::memory_order_relaxed))};
    return began + *options_.task_timeout;
}

bool PoolCore::on_worker_readable(Worker& w, bool for_waiter) {
    w.link.take_incoming();
    while (const auto frame = w.link.next_frame()) {
        if (frame->empty()) throw DecodeError("pool link: empty frame");
        const auto kind = static_cast<FrameKind>((*frame)[0]);
        Decoder d(frame->subspan(1));
        const auto task_id = d.read<std::uint64_t>();
        auto it = running_tasks_.find(task_id);
        if (it == running_tasks_.end()) continue;
        if (for_waiter && it->second.sink->runs_callbacks()) {
            w.link.unread_frame(*frame);  // callbacks run on the dispatcher thread
            return false;
        }
        ChunkTask task = std::move(it->second);
        running_tasks_.erase(it);
        // Answers come in the order the tasks were sent, but for a task that failed to decode.
        if (!w.inflight.empty() && w.inflight.front() == task_id) {
            w.inflight.pop_front();
        } else if (const auto at = std::ranges::find(w.inflight, task_id); at != w.inflight.end()) {
            w.inflight.erase(at);
        }
        early_deaths_ = 0;
        ++w.answered;
        try {
            if (kind == FrameKind::result) {
                task.sink->deliver(task.chunk, d.read_bytes(d.remaining()));
            } else {
                auto type = d.read<std::string>();
                auto message = d.read<std::string>();
                task.sink->fail(task.chunk, std::make_exception_ptr(TaskError(type, message)));
            }
        } catch (const std::exception& e) {
            get_logger().error("a pool callback raised: {}", e.what());
        } catch (...) {
            get_logger().error("a pool callback raised an exception");
        }
    }
    return true;
}

void PoolCore::collect_until(const std::atomic<bool>& ready, std::chrono::steady_clock::time_point until) {
    // Not on the dispatcher thread (a callback waiting), and not under task_timeout, whose
    // deadlines the dispatcher's poll keeps.
    if (options_.task_timeout || std::this_thread::get_id() == thread_.get_id()) return;
    std::unique_lock core(core_mutex_, std::try_to_lock);
    if (!core.owns_lock()) return;  // the dispatcher (or another waiter) is at work
    // Only while the dispatcher sleeps: awake, it delivers at once. Its readers' flags go down,
    // so that the workers' answers wake this thread (through the waiter word), not its poll.
    if (!sleeping_.load(std::memory_order_relaxed)) return;
    waiter_active_.store(true, std::memory_order_relaxed);
    for (auto& w : workers_) w->link.lower_reader_flag();
    bool left_for_dispatcher = false;
    const auto answers_or_dispatcher = [this] {
        if (dispatcher_wants_core_.load(std::memory_order_relaxed)) return true;
        for (auto& w : workers_)
            if (w->link.has_incoming()) return true;
        return false;
    };
    for (;;) {
        for (auto& w : workers_) {
            if ((w->link.has_incoming() || w->link.frame_ready()) && !on_worker_readable(*w, true)) {
                left_for_dispatcher = true;
                break;
            }
        }
        // Answers taken free windows: the chunks waiting for them go now, from this thread, as
        // the dispatcher would send them.
        if (!pending_.empty() && dispatching_allowed()) dispatch();
        for (auto& w : workers_)
            if (w->link.output_pending()) flush(*w);
        if (left_for_dispatcher || ready.load(std::memory_order_acquire) ||
            dispatcher_wants_core_.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() >= until)
            break;
        // An answer from a worker that runs comes within microseconds: spin for it first.
        if (spin_until(waiter_spin_, 1, answers_or_dispatcher)) continue;
        // Sleep until a worker publishes, or the dispatcher needs the core (lock_core()).
        waiter_->asleep.store(1, std::memory_order_relaxed);
        const std::uint32_t seq = waiter_->seq.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the flag before the words it guards
        if (!answers_or_dispatcher()) {
            const auto now = std::chrono::steady_clock::now();
            futex_wait(&waiter_->seq, seq,
                       until == std::chrono::steady_clock::time_point::max() ? Deadline::never()
                                                                             : Deadline::after(until - now));
        }
        waiter_->asleep.store(0, std::memory_order_relaxed);
    }
    // Hand the reading back: the dispatcher's flags up again while it sleeps, then one more look
    // for what came meanwhile (or was left for its callbacks).
    if (sleeping_.load(std::memory_order_relaxed)) {
        for (auto& w : workers_) w->link.arm(true, false);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        bool left = left_for_dispatcher || !pending_.empty() || incoming_ready_.load(std::memory_order_relaxed);
        for (auto& w : workers_)
            left = left || w->link.has_incoming() || w->link.frame_ready() || w->link.output_pending();
        if (left) wake();
    }
    waiter_active_.store(false, std::memory_order_relaxed);
}

bool PoolCore::dispatching_allowed() const {
    std::lock_guard lock(mutex_);
    return state_ == State::running || state_ == State::closing;
}

void PoolCore::lock_core(std::unique_lock<std::mutex>& core) {
    if (core.try_lock()) return;
    // A waiter collecting answers holds it, perhaps asleep: wake it, it gives the core back.
    dispatcher_wants_core_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the flag before the waiter's
    waiter_->wake_if_asleep();
    core.lock();
    dispatcher_wants_core_.store(false, std::memory_order_relaxed);
}

void PoolCore::on_worker_ended(std::size_t index) {
    Worker& w = *workers_[index];
    on_worker_readable(w);  // results it sent before ending count
    w.process.join();
    const int code = w.process.exitcode().value_or(255);
    const int pid = w.process.pid().value_or(0);
    // Acquire: pairs with the worker's release store (see pool_worker_main).
    const std::uint64_t lost = w.running->task.load(std::memory_order_acquire);
    if (!w.inflight.empty()) {
        // The task it was running fails; the others it had been sent run again elsewhere, in order.
        for (auto it = w.inflight.rbegin(); it != w.inflight.rend(); ++it) {
            if (*it == lost) continue;
            auto t = running_tasks_.find(*it);
            if (t == running_tasks_.end()) continue;
            pending_.push_front(std::move(t->second));
            running_tasks_.erase(t);
        }
        auto t = lost != 0 ? running_tasks_.find(lost) : running_tasks_.end();
        if (t != running_tasks_.end()) {
            ChunkTask task = std::move(t->second);
            running_tasks_.erase(t);
            std::exception_ptr error;
            if (w.timed_out) {
                error = std::make_exception_ptr(TimeoutError("the task ran past the pool's task_timeout; its worker (pid " +
                                                             std::to_string(pid) + ") was killed"));
            } else {
                const std::string how = code < 0 ? "was killed by signal " + std::to_string(-code)
                                                 : "exited with code " + std::to_string(code);
                error = std::make_exception_ptr(
                    WorkerLostError("the worker running the task (pid " + std::to_string(pid) + ") " + how, pid, code));
            }
            fail_task(task, error);
        }
    }
    if (w.answered == 0 && code != 0) {
        ++early_deaths_;
        last_early_death_ = code < 0 ? "killed by signal " + std::to_string(-code) : "exit code " + std::to_string(code);
    }
    get_logger().debug("cleaning up worker {}", index);
    workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(index));
    std::lock_guard lock(mutex_);
    worker_handles_.clear();
    for (auto& each : workers_) worker_handles_.push_back(each->process);
}

void PoolCore::fail_pending(const std::exception_ptr& error) {
    for (auto& task : pending_) fail_task(task, error);
    pending_.clear();
}

void PoolCore::fail_everything(const std::exception_ptr& error) {
    fail_pending(error);
    for (auto& [id, task] : running_tasks_) fail_task(task, error);
    running_tasks_.clear();
    for (auto& w : workers_) w->inflight.clear();
}

void PoolCore::run() {
    try {
        for (int i = 0; i < processes; ++i) start_worker();
    } catch (...) {
        std::lock_guard lock(mutex_);
        start_error_ = std::current_exception();
    }
    {
        std::lock_guard lock(mutex_);
        workers_started_ = true;
    }
    started_.notify_all();

    bool killed = false;
    auto last_poll = std::chrono::steady_clock::now();
    auto last_activity = last_poll;
    std::unique_lock core(core_mutex_, std::defer_lock);
    for (;;) {
        if (!core.owns_lock()) lock_core(core);
        State state;
        {
            std::lock_guard lock(mutex_);
            state = state_;
            incoming_ready_.store(false, std::memory_order_relaxed);
            take_incoming();
        }
        if (state == State::terminating && !killed) {
            for (auto& w : workers_) w->process.terminate();
            fail_everything(std::make_exception_ptr(ProcessError("pool terminated")));
            killed = true;
        }
        const bool work_left = !pending_.empty() || !running_tasks_.empty();
        if (state == State::closing && !work_left) {
            for (auto& w : workers_) {
                if (!w->stop_sent) {
                    append_frame(w->link, FrameKind::stop, [](Encoder&) {});
                    w->stop_sent = true;
                    flush(*w);
                }
            }
        }
        // Closing ends when the work is done and the workers have exited; terminating, once they
        // have exited (the work has failed). A task is never left behind: while tasks remain
        // after close(), workers that retire (maxtasksperchild) or die are replaced.
        if (workers_.empty() && (state == State::terminating || (state == State::closing && !work_left))) break;

        if (early_deaths_ > 2 * processes + 3 && state != State::terminating) {
            get_logger().error("pool workers keep dying before running any task ({}); terminating the pool",
                               last_early_death_);
            {
                std::lock_guard lock(mutex_);
                state_ = State::terminating;
            }
            for (auto& w : workers_) w->process.terminate();
            fail_everything(std::make_exception_ptr(ProcessError(
                "pool workers keep dying before running any task (" + last_early_death_ +
                "): is the initializer failing?")));
            killed = true;
            continue;
        }

        if (state != State::terminating) {
            replace_workers(state);
            dispatch();
        }

        // Results first: taking them frees windows for the next dispatch.
        bool active = false;
        for (auto& w : workers_) {
            if (w->link.has_incoming() || w->link.frame_ready()) {
                on_worker_readable(*w);
                active = true;
            }
            if (w->link.output_pending()) flush(*w);
        }
        // While results keep coming, the loop goes round without a system call; it looks at the
        // sentinels and the task deadlines at least every millisecond all the same.
        if (active) {
            last_activity = std::chrono::steady_clock::now();
            if (last_activity - last_poll < kBusyPollInterval) continue;
        }

        int timeout_ms = active ? 0 : -1;
        if (options_.task_timeout && state != State::terminating && !active) {
            const auto now = std::chrono::steady_clock::now();
            for (auto& w : workers_) {
                const auto deadline = task_deadline(*w, now);
                if (!deadline) continue;
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now);
                const int ms = static_cast<int>(std::max<std::int64_t>(0, left.count()) + 1);
                timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
            }
        }
        // Which links wait for room: what work_arrived() looks at while submit() may be writing
        // to the links (it holds core_mutex_ then, which this thread gives up until it wakes).
        room_wanted_.assign(workers_.size(), false);
        for (std::size_t i = 0; i < workers_.size(); ++i) room_wanted_[i] = workers_[i]->link.output_pending();
        // Answers are due, or the pool was busy a moment ago: answers come within microseconds
        // from a worker that runs, and a caller that just had its result often submits again at
        // once. The budget shrinks when spins go unanswered (an idle pool).
        const bool expecting = !running_tasks_.empty() ||
                               std::chrono::steady_clock::now() - last_activity < kBusyPollInterval;
        bool armed = false;
        if (!active) {
            // About to sleep: say so (to submit() and to every worker), then look once more. The
            // flags go up while core_mutex_ is held, so that tasks submit() writes to a link
            // after it is released find the worker's answer ringing this thread.
            sleeping_.store(true, std::memory_order_relaxed);
            for (std::size_t i = 0; i < workers_.size(); ++i) workers_[i]->link.arm(true, room_wanted_[i]);
            armed = true;
            core.unlock();
            std::atomic_thread_fence(std::memory_order_seq_cst);  // the flags before the words they guard
            // A waiter collecting answers (collect_until) does this thread's watching meanwhile:
            // it is not to be raced for them, and it hands back what it leaves.
            const auto waiter_active = [this] { return waiter_active_.load(std::memory_order_relaxed); };
            if (expecting) spin_until(spin_, 1, [&] { return waiter_active() || work_arrived(); });
            if (!waiter_active() && work_arrived()) {
                disarm();
                continue;
            }
        } else {
            core.unlock();
        }

        // Wait for a doorbell, a death, a wake-up, or the next task deadline.
        poll_fds_.clear();
        poll_fds_.push_back({wake_fd_.get(), POLLIN, 0});
        for (auto& w : workers_) {
            poll_fds_.push_back({w->fd, static_cast<short>(w->eof ? 0 : POLLIN), 0});
            poll_fds_.push_back({w->process.sentinel(), POLLIN, 0});
        }
        int ready = ::poll(poll_fds_.data(), poll_fds_.size(), timeout_ms);
        last_poll = std::chrono::steady_clock::now();
        lock_core(core);
        if (armed) disarm();
        if (ready < 0 && errno != EINTR) {
            get_logger().error("pool dispatcher: poll failed: {}", std::strerror(errno));
            break;
        }
        if (poll_fds_[0].revents & POLLIN) {
            std::uint64_t count;
            (void)!::read(wake_fd_.get(), &count, sizeof count);
        }
        std::vector<std::size_t> ended;
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            const pollfd& doorbell = poll_fds_[1 + 2 * i];
            const pollfd& sentinel = poll_fds_[2 + 2 * i];
            // End of file: the worker closed its end; only its sentinel matters now.
            if ((doorbell.revents & (POLLIN | POLLHUP | POLLERR)) && !workers_[i]->link.drain_doorbells())
                workers_[i]->eof = true;
            // A sentinel whose exit code was already collected (the runtime reaps ended
            // children when another one starts) shows only as hung up.
            if (sentinel.revents & (POLLIN | POLLHUP | POLLERR)) ended.push_back(i);
        }
        for (auto it = ended.rbegin(); it != ended.rend(); ++it) on_worker_ended(*it);

        if (options_.task_timeout) {
            const auto now = std::chrono::steady_clock::now();
            for (auto& w : workers_) {
                const auto deadline = task_deadline(*w, now);
                if (deadline && now >= *deadline) {
                    w->timed_out = true;
                    w->process.kill();
                }
            }
        }
    }
    sleeping_.store(false, std::memory_order_relaxed);  // no waiter may wait for this thread now
    // Only a failing poll ends the loop with work left; that work fails rather than stay unready.
    fail_everything(std::make_exception_ptr(ProcessError("the pool's dispatcher stopped")));
    {
        std::lock_guard lock(mutex_);
        state_ = State::finished;
        worker_handles_.clear();
    }
    get_logger().debug("worker handler exiting");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

BasicPool::~BasicPool() = default;

void BasicPool::send_open_inputs() {
    std::vector<std::shared_ptr<detail::InputFeed>> open_inputs;
    {
        std::lock_guard lock(inputs_mutex_);
        for (auto& weak : inputs_)
            if (auto feed = weak.lock()) open_inputs.push_back(std::move(feed));
        inputs_.clear();
    }
    if (running()) {
        for (auto& feed : open_inputs) feed->take_all();
    }
}

void BasicPool::watch_input(const std::shared_ptr<detail::InputFeed>& feed) {
    std::lock_guard lock(inputs_mutex_);
    std::erase_if(inputs_, [](const auto& weak) { return weak.expired(); });
    inputs_.push_back(feed);
}

void BasicPool::check_running() const {
    if (!running()) throw UsageError("Pool not running");
}

std::size_t BasicPool::default_chunksize(std::size_t items) const {
    const std::size_t per = static_cast<std::size_t>(processes()) * 4;
    std::size_t chunksize = items / per;
    if (items % per != 0) ++chunksize;
    return std::max<std::size_t>(chunksize, 1);
}

std::size_t BasicPool::imap_window() const { return static_cast<std::size_t>(processes()) * 16; }

// ---------------------------------------------------------------------------------------------

Pool::Pool(PoolOptions options) : core_(std::make_unique<detail::PoolCore>(std::move(options))) {}
// The core's destructor terminates and joins the dispatcher.
Pool::~Pool() = default;

int Pool::processes() const noexcept { return core_->processes; }
StartMethod Pool::start_method() const noexcept { return core_->method; }
void Pool::submit(std::vector<detail::ChunkTask> tasks) { core_->submit(std::move(tasks)); }
bool Pool::running() const noexcept { return core_->running(); }
std::weak_ptr<detail::WaitHelper> Pool::wait_helper() const noexcept { return core_->wait_helper(); }
void Pool::close() {
    send_open_inputs();
    core_->close();
}
void Pool::terminate() { core_->terminate(); }
void Pool::join() { core_->join(); }
std::vector<Process> Pool::workers() const { return core_->workers(); }

}  // namespace mproc
