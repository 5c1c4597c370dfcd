// A serving rank (every rank but 0): it takes rank 0's pools one after the other and runs their
// tasks, each in a local mproc::Pool (a crash stays a WorkerLostError) or, when asked, in the rank
// itself; it answers in batches and says it is alive, and it exits when rank 0's program ends.
#include <cxxabi.h>
#include <sched.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "mpi/backoff.hpp"
#include "mpi/messenger.hpp"
#include "mpi/protocol.hpp"
#include "mpi/runtime.hpp"
#include "mproc/pool.hpp"
#include "process/process_access.hpp"

namespace mproc::mpi::detail {
namespace {

using ::mproc::detail::CallSite;
using ::mproc::detail::ChunkEntry;
using ::mproc::detail::ChunkTask;

// A pool's initializer, as it travels: its portable call, run in each worker.
void run_encoded_call(const std::vector<std::byte>& call) {
    Decoder in(call);
    ::mproc::detail::run_portable_call(in);
}

std::string type_name_of(const std::exception_ptr& error, std::string& message) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        message = e.what();
        return ::mproc::detail::demangled_name(typeid(e));
    } catch (...) {
        message.clear();
        const std::type_info* type = abi::__cxa_current_exception_type();
        return type ? ::mproc::detail::demangled_name(*type) : std::string("unknown exception");
    }
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
        result.type_name = type_name_of(std::current_exception(), result.message);
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

    struct InRankTask {
        std::uint64_t id;
        CallSite site;
        std::vector<std::byte> arguments;
    };

    // Ends the process on stop.
    void handle(std::span<const std::byte> bytes);
    void start(const PoolSpec& spec);
    void run_tasks(TaskBatch batch);
    void end_pool(bool terminate);
    void executor_loop();
    [[noreturn]] void exit_now(bool finalize, int status);
    void send_results();

    const Runtime& runtime_;
    Messenger messenger_;
    IdleBackoff backoff_;

    std::mutex mutex_;
    std::condition_variable outbox_changed_;
    std::vector<TaskResult> outbox_;

    std::uint64_t pool_id_ = 0;
    bool run_in_rank_ = false;
    std::unique_ptr<mproc::Pool> local_;
    std::shared_ptr<Sink> sink_;
    std::vector<std::optional<CallSite>> sites_;
    std::vector<std::string> site_errors_;

    // In-rank mode: one thread runs the tasks, so that the loop keeps answering heartbeats.
    std::mutex executor_mutex_;
    std::condition_variable executor_wake_;
    std::deque<InRankTask> executor_queue_;
    std::optional<std::thread> executor_;
};

void Server::run() {
    using Clock = std::chrono::steady_clock;
    auto last_from_root = Clock::now();
    auto last_sent = Clock::now();
    for (;;) {
        bool busy = false;
        while (auto received = messenger_.receive(0, kToServer)) {
            busy = true;
            last_from_root = Clock::now();
            handle(received->bytes);  // ends the process on stop
        }
        bool have_results = false;
        {
            std::lock_guard lock(mutex_);
            have_results = !outbox_.empty();
        }
        const auto now = Clock::now();
        if (have_results) {
            send_results();
            busy = true;
            last_sent = now;
        } else if (now - last_sent >= runtime_.options.heartbeat_interval) {
            messenger_.send(0, kToRoot, message(RootMessage::heartbeat));
            last_sent = now;
        }
        if (now - last_from_root > runtime_.options.heartbeat_timeout) {
            std::fprintf(stderr, "mproc::mpi: rank %d on %s: nothing heard from rank 0 for %lld ms; exiting\n",
                         runtime_.rank, runtime_.host.c_str(),
                         static_cast<long long>(runtime_.options.heartbeat_timeout.count()));
            exit_now(false, 1);
        }
        const bool sends_done = messenger_.progress();
        if (busy) backoff_.active();
        auto wait = backoff_.next_wait();
        if (!sends_done) wait = std::min(wait, std::chrono::microseconds(50));
        if (wait == std::chrono::microseconds::zero()) {
            sched_yield();
            continue;
        }
        std::unique_lock lock(mutex_);
        outbox_changed_.wait_for(lock, wait, [this] { return !outbox_.empty(); });
    }
}

void Server::send_results() {
    std::vector<TaskResult> results;
    {
        std::lock_guard lock(mutex_);
        results.swap(outbox_);
    }
    messenger_.send(0, kToRoot, message(RootMessage::results, results));
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
        messenger_.send(0, kToRoot, message(RootMessage::protocol_error, std::string(e.what())));
    }
}

void Server::start(const PoolSpec& spec) {
    if (local_) end_pool(true);  // rank 0 lost track of the last one: it is over
    pool_id_ = spec.pool_id;
    run_in_rank_ = spec.run_in_rank;
    sites_.clear();
    site_errors_.clear();
    try {
        int workers = 1;
        if (spec.run_in_rank) {
            if (!spec.initializer.empty()) run_encoded_call(spec.initializer);
            if (!executor_) executor_.emplace([this] { executor_loop(); });
        } else {
            ::mproc::PoolOptions options;
            options.processes = spec.workers;
            options.context = spec.context;
            options.maxtasksperchild = spec.maxtasksperchild;
            if (spec.task_timeout_ms) options.task_timeout = std::chrono::milliseconds(*spec.task_timeout_ms);
            if (!spec.initializer.empty()) options.initializer = Initializer(&run_encoded_call, spec.initializer);
            local_ = std::make_unique<mproc::Pool>(std::move(options));
            sink_ = std::make_shared<Sink>(*this);
            workers = local_->processes();
        }
        messenger_.send(0, kToRoot, message(RootMessage::ready, Ready{spec.pool_id, workers, ::getpid(), runtime_.host}));
    } catch (const std::exception& e) {
        local_.reset();
        messenger_.send(0, kToRoot, message(RootMessage::start_failed, std::string(e.what())));
    }
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
    for (auto& task : batch.tasks) {
        if (task.site >= sites_.size() || !sites_[task.site]) {
            TaskResult result;
            result.id = task.id;
            result.outcome = Outcome::other_error;
            result.type_name = "mproc::DecodeError";
            result.message = task.site < site_errors_.size() && !site_errors_[task.site].empty()
                                 ? site_errors_[task.site]
                                 : fmt::format("MPI rank {}: a task for a call site it was never sent", runtime_.rank);
            post(std::move(result));
            continue;
        }
        if (run_in_rank_) {
            {
                std::lock_guard lock(executor_mutex_);
                executor_queue_.push_back(InRankTask{task.id, *sites_[task.site], std::move(task.arguments)});
            }
            executor_wake_.notify_one();
            continue;
        }
        ChunkTask chunk;
        chunk.site = *sites_[task.site];
        chunk.arguments = std::move(task.arguments);
        chunk.sink = sink_;
        chunk.chunk = static_cast<std::size_t>(task.id);
        tasks.push_back(std::move(chunk));
    }
    if (tasks.empty()) return;
    if (!local_) {
        for (auto& task : tasks) post(result_of_error(task.chunk, std::make_exception_ptr(UsageError("Pool not running"))));
        return;
    }
    ::mproc::detail::PoolAccess::submit(*local_, std::move(tasks));
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
    {
        // In-rank: tasks not begun are dropped; the one running finishes, and its answer, for a
        // pool that is over, is ignored by rank 0.
        std::lock_guard lock(executor_mutex_);
        executor_queue_.clear();
    }
    messenger_.send(0, kToRoot, message(RootMessage::ended, pool_id_));
    pool_id_ = 0;
}

void Server::executor_loop() {
    for (;;) {
        InRankTask task;
        {
            std::unique_lock lock(executor_mutex_);
            executor_wake_.wait(lock, [this] { return !executor_queue_.empty(); });
            task = std::move(executor_queue_.front());
            executor_queue_.pop_front();
        }
        TaskResult result;
        result.id = task.id;
        try {
            Encoder out(result.value);
            Decoder in(task.arguments);
            reinterpret_cast<ChunkEntry>(const_cast<void*>(task.site.entry))(task.site.function, in, out);
        } catch (...) {
            std::string message;
            result.type_name = type_name_of(std::current_exception(), message);
            result.message = std::move(message);
            result.outcome = Outcome::task_error;
            result.value.clear();
        }
        post(std::move(result));
    }
}

void Server::exit_now(bool finalize, int status) {
    if (local_) {
        local_->terminate();
        local_->join();
        local_.reset();
    }
    if (!outbox_.empty()) send_results();
    messenger_.drain(::mproc::detail::Deadline::after(runtime_.options.heartbeat_timeout));
    std::fflush(nullptr);
    if (finalize) MPI_Finalize();
    // mproc's exit sequence runs (it stops a fork server the local pools used); an in-rank task
    // still running ends with the process.
    std::exit(status);
}

}  // namespace

void serve(const Runtime& runtime) {
    auto* server = new Server(runtime);  // lives until the process ends
    server->run();
}

}  // namespace mproc::mpi::detail
