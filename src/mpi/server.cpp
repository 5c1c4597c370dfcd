// A serving rank (every rank but 0): it takes rank 0's pools one after the other and runs their
// tasks, each in a local mproc::Pool (a crash stays a WorkerLostError) or, when asked, in the rank
// itself, on its main thread, a batch at a time; it answers in batches, and a thread of its own
// says it is alive (also while a long task runs in the rank), and it exits when rank 0's program
// ends.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "mpi/backoff.hpp"
#include "mpi/messenger.hpp"
#include "mpi/protocol.hpp"
#include "mpi/runtime.hpp"
#include "mproc/logging.hpp"
#include "mproc/pool.hpp"
#include "process/process_access.hpp"

namespace mproc::mpi::detail {
namespace {

using ::mproc::detail::CallSite;
using ::mproc::detail::ChunkEntry;
using ::mproc::detail::ChunkTask;

// In-rank results of a batch are sent as soon as this many bytes of them are ready.
constexpr std::size_t kEagerResultBytes = 64 * 1024;

// A pool's initializer, as it travels: its portable call, run in each worker.
void run_encoded_call(const std::vector<std::byte>& call) {
    Decoder in(call);
    ::mproc::detail::run_portable_call(in);
}

// A task's error as it travels back to rank 0.
TaskResult result_of_error(std::uint64_t id, const std::exception_ptr& error) {
    TaskResult result;
    result.id = id;
    try {
        std::rethrow_exception(error);
    } catch (const WorkerLostError& e) {
        result.outcome = Outcome::worker_lost;
        result.message = e.what();
        result.pid = e.pid();
        result.exitcode = e.exitcode();
    } catch (const TaskError& e) {
        result.outcome = Outcome::task_error;
        result.type_name = e.type_name();
        result.message = e.message();
    } catch (const TimeoutError& e) {
        result.outcome = Outcome::timeout;
        result.message = e.what();
    } catch (const DecodeError& e) {
        result.outcome = Outcome::other_error;
        result.type_name = "mproc::DecodeError";
        result.message = e.what();
    } catch (const UsageError& e) {
        result.outcome = Outcome::other_error;
        result.type_name = "mproc::UsageError";
        result.message = e.what();
    } catch (...) {
        result.outcome = Outcome::other_error;
        result.type_name = ::mproc::detail::exception_type_name(std::current_exception(), result.message);
    }
    return result;
}

class Server {
public:
    explicit Server(const Runtime& runtime) : runtime_(runtime), messenger_(runtime.comm) {}

    [[noreturn]] void run();

    // Where a finished task goes: the outbox, which the main loop sends to rank 0.
    void post(TaskResult result) {
        {
            std::lock_guard lock(mutex_);
            outbox_.push_back(std::move(result));
        }
        outbox_changed_.notify_one();
    }
    void post_all(std::vector<TaskResult>& results) {
        if (results.empty()) return;
        {
            std::lock_guard lock(mutex_);
            for (auto& result : results) outbox_.push_back(std::move(result));
        }
        results.clear();
        outbox_changed_.notify_one();
    }

private:
    class Sink final : public ::mproc::detail::ResultSink {
    public:
        explicit Sink(Server& server) : server_(server) {}
        void deliver(std::size_t chunk, std::span<const std::byte> results) override {
            TaskResult result;
            result.id = chunk;
            result.value.assign(results.begin(), results.end());
            server_.post(std::move(result));
        }
        void fail(std::size_t chunk, std::exception_ptr error) override { server_.post(result_of_error(chunk, error)); }

    private:
        Server& server_;
    };

    // Ends the process on stop.
    void handle(std::span<const std::byte> bytes);
    void start(const PoolSpec& spec);
    void run_tasks(TaskBatch batch);
    void start_local_pool();
    void end_pool(bool terminate);
    TaskResult run_in_rank(const TaskMessage& task, const CallSite& site);
    void heartbeat_loop();
    [[noreturn]] void exit_now(bool finalize, int status);
    void send(std::vector<std::byte> message);
    void send_results();

    const Runtime& runtime_;
    Messenger messenger_;
    IdleBackoff backoff_;

    std::mutex mutex_;
    std::condition_variable outbox_changed_;
    std::vector<TaskResult> outbox_;

    using Clock = std::chrono::steady_clock;
    static std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

    std::uint64_t pool_id_ = 0;
    PoolSpec spec_;
    std::unique_ptr<mproc::Pool> local_;
    std::shared_ptr<Sink> sink_;
    std::vector<std::optional<CallSite>> sites_;
    std::vector<std::string> site_errors_;

    // The heartbeat thread's view of the main loop: when it last sent, when rank 0 last spoke.
    std::atomic<std::int64_t> last_sent_ns_{now_ns()};
    std::atomic<std::int64_t> last_from_root_ns_{now_ns()};
    std::mutex heartbeat_mutex_;
    bool stopping_ = false;  // under heartbeat_mutex_
    std::condition_variable heartbeat_stop_;
    std::thread heartbeat_;
};

void Server::run() {
    heartbeat_ = std::thread([this] { heartbeat_loop(); });
    for (;;) {
        bool busy = false;
        while (auto received = messenger_.receive(0, kToServer)) {
            busy = true;
            last_from_root_ns_.store(now_ns(), std::memory_order_relaxed);
            handle(received->bytes());  // ends the process on stop
        }
        bool have_results = false;
        {
            std::lock_guard lock(mutex_);
            have_results = !outbox_.empty();
        }
        if (have_results) {
            send_results();
            busy = true;
        }
        const bool sends_done = messenger_.progress();
        if (busy) backoff_.active();
        // Rank 0's next batch tends to follow an answer within a round trip: keep polling for it.
        auto wait = backoff_.next_wait(std::chrono::microseconds(1000));
        if (!sends_done) wait = std::min(wait, std::chrono::microseconds(50));
        if (wait == std::chrono::microseconds::zero()) {
            backoff_.between_polls();
            continue;
        }
        std::unique_lock lock(mutex_);
        outbox_changed_.wait_for(lock, wait, [this] { return !outbox_.empty(); });
    }
}

void Server::heartbeat_loop() {
    const auto interval = std::chrono::duration_cast<std::chrono::nanoseconds>(runtime_.options.heartbeat_interval);
    const auto timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(runtime_.options.heartbeat_timeout);
    for (;;) {
        {
            std::unique_lock lock(heartbeat_mutex_);
            if (heartbeat_stop_.wait_for(lock, runtime_.options.heartbeat_interval / 4,
                                         [this] { return stopping_; }))
                return;
        }
        const std::int64_t now = now_ns();
        if (now - last_sent_ns_.load(std::memory_order_relaxed) >= interval.count()) send(message(RootMessage::heartbeat));
        if (now - last_from_root_ns_.load(std::memory_order_relaxed) > timeout.count()) {
            std::fprintf(stderr, "mproc::mpi: rank %d on %s: nothing heard from rank 0 for %lld ms; exiting\n",
                         runtime_.rank, runtime_.host.c_str(),
                         static_cast<long long>(runtime_.options.heartbeat_timeout.count()));
            std::fflush(nullptr);
            std::_Exit(1);  // the main thread may be inside a task: nothing else can be cleaned up safely
        }
    }
}

void Server::send(std::vector<std::byte> bytes) {
    messenger_.send(0, kToRoot, std::move(bytes));
    last_sent_ns_.store(now_ns(), std::memory_order_relaxed);
}

void Server::send_results() {
    std::vector<TaskResult> results;
    {
        std::lock_guard lock(mutex_);
        results.swap(outbox_);
    }
    send(message(RootMessage::results, results));
}

void Server::handle(std::span<const std::byte> bytes) {
    try {
        Decoder in(bytes);
        const auto kind = static_cast<ServerMessage>(in.read<std::uint8_t>());
        switch (kind) {
            case ServerMessage::start:
                start(in.read<PoolSpec>());
                return;
            case ServerMessage::tasks:
                run_tasks(in.read<TaskBatch>());
                return;
            case ServerMessage::end:
            case ServerMessage::terminate:
                if (in.read<std::uint64_t>() == pool_id_) end_pool(kind == ServerMessage::terminate);
                return;
            case ServerMessage::ping:
                return;
            case ServerMessage::stop:
                exit_now(in.read<bool>(), 0);
        }
        throw DecodeError(fmt::format("a message of unknown kind {}", static_cast<int>(kind)));
    } catch (const std::exception& e) {
        send(message(RootMessage::protocol_error, std::string(e.what())));
    }
}

void Server::start(const PoolSpec& spec) {
    if (local_) end_pool(true);  // rank 0 lost track of the last one: it is over
    pool_id_ = spec.pool_id;
    spec_ = spec;
    sites_.clear();
    site_errors_.clear();
    try {
        int workers = 1;
        if (spec.run_in_rank) {
            if (!spec.initializer.empty()) run_encoded_call(spec.initializer);
        } else {
            start_local_pool();
            workers = local_->processes();
        }
        send(message(RootMessage::ready, Ready{spec.pool_id, workers, ::getpid(), runtime_.host}));
    } catch (const std::exception& e) {
        local_.reset();
        send(message(RootMessage::start_failed, std::string(e.what())));
    }
}

void Server::start_local_pool() {
    local_ = std::make_unique<mproc::Pool>(local_pool_options(spec_));
    if (!sink_) sink_ = std::make_shared<Sink>(*this);
}

TaskResult Server::run_in_rank(const TaskMessage& task, const CallSite& site) {
    TaskResult result;
    result.id = task.id;
    try {
        Encoder out(result.value);
        Decoder in(task.arguments);
        reinterpret_cast<ChunkEntry>(const_cast<void*>(site.entry))(site.function, in, out);
    } catch (...) {
        result.type_name = ::mproc::detail::exception_type_name(std::current_exception(), result.message);
        result.outcome = Outcome::task_error;
        result.value.clear();
    }
    return result;
}

void Server::run_tasks(TaskBatch batch) {
    if (batch.pool_id != pool_id_) return;  // the pool ended here; rank 0 settled these already
    for (auto& definition : batch.sites) {
        if (sites_.size() <= definition.id) {
            sites_.resize(definition.id + 1);
            site_errors_.resize(definition.id + 1);
        }
        try {
            CallSite site;
            site.entry = ::mproc::detail::resolve_code_ref(definition.entry);
            if (definition.function) site.function = ::mproc::detail::resolve_code_ref(*definition.function);
            sites_[definition.id] = site;
        } catch (const std::exception& e) {
            site_errors_[definition.id] = fmt::format("MPI rank {} on {} cannot run the task's code: {}", runtime_.rank,
                                                      runtime_.host, e.what());
        }
    }
    std::vector<ChunkTask> tasks;
    std::vector<TaskResult> done;  // in-rank results and refusals, posted together
    std::size_t done_bytes = 0;
    for (auto& task : batch.tasks) {
        if (task.site >= sites_.size() || !sites_[task.site]) {
            TaskResult result;
            result.id = task.id;
            result.outcome = Outcome::other_error;
            result.type_name = "mproc::DecodeError";
            result.message = task.site < site_errors_.size() && !site_errors_[task.site].empty()
                                 ? site_errors_[task.site]
                                 : fmt::format("MPI rank {}: a task for a call site it was never sent", runtime_.rank);
            done.push_back(std::move(result));
            continue;
        }
        if (spec_.run_in_rank) {
            done.push_back(run_in_rank(task, *sites_[task.site]));
            done_bytes += done.back().value.size() + 16;
            // Small results travel together; large ones leave while the next task runs.
            if (done_bytes >= kEagerResultBytes) {
                post_all(done);
                send_results();
                done_bytes = 0;
            }
            continue;
        }
        ChunkTask chunk;
        chunk.site = *sites_[task.site];
        chunk.arguments = std::move(task.arguments);
        chunk.sink = sink_;
        chunk.chunk = static_cast<std::size_t>(task.id);
        tasks.push_back(std::move(chunk));
    }
    post_all(done);
    if (tasks.empty()) return;
    // The local pool may have ended itself (its workers kept dying before they ran a task): this
    // rank's pool starts again, and the batch fails only if that fails too.
    std::vector<std::uint64_t> ids;
    ids.reserve(tasks.size());
    for (const auto& task : tasks) ids.push_back(task.chunk);
    try {
        if (local_ && !::mproc::detail::PoolAccess::running(*local_)) {
            get_logger().warning("MPI rank {}: its local pool ended itself; starting it again", runtime_.rank);
            local_->terminate();
            local_->join();
            local_.reset();
        }
        if (!local_) start_local_pool();
        ::mproc::detail::PoolAccess::submit(*local_, std::move(tasks));
    } catch (const std::exception& e) {
        const auto error = std::make_exception_ptr(ProcessError(
            fmt::format("MPI rank {} on {} could not run the task in its local pool: {}", runtime_.rank, runtime_.host, e.what())));
        for (const auto id : ids) post(result_of_error(id, error));
    }
}

void Server::end_pool(bool terminate) {
    if (local_) {
        if (terminate) {
            local_->terminate();
        } else {
            local_->close();
        }
        local_->join();
        local_.reset();
    }
    send(message(RootMessage::ended, pool_id_));
    pool_id_ = 0;
}

void Server::exit_now(bool finalize, int status) {
    if (local_) {
        local_->terminate();
        local_->join();
        local_.reset();
    }
    if (!outbox_.empty()) send_results();
    {
        std::lock_guard lock(heartbeat_mutex_);
        stopping_ = true;
    }
    heartbeat_stop_.notify_one();
    heartbeat_.join();
    messenger_.drain(::mproc::detail::Deadline::after(runtime_.options.heartbeat_timeout));
    std::fflush(nullptr);
    if (finalize) MPI_Finalize();
    // mproc's exit sequence runs: it stops a fork server the local pools used.
    std::exit(status);
}

}  // namespace

::mproc::PoolOptions local_pool_options(const PoolSpec& spec) {
    ::mproc::PoolOptions options;
    options.processes = spec.workers;
    options.context = spec.context;
    options.maxtasksperchild = spec.maxtasksperchild;
    if (spec.task_timeout_ms) options.task_timeout = std::chrono::milliseconds(*spec.task_timeout_ms);
    if (!spec.initializer.empty()) options.initializer = Initializer(&run_encoded_call, spec.initializer);
    return options;
}

void serve(const Runtime& runtime) {
    auto* server = new Server(runtime);  // lives until the process ends
    server->run();
}

}  // namespace mproc::mpi::detail
