#include "mpi/dispatcher.hpp"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "mproc/pool.hpp"

namespace mproc::mpi::detail {
namespace {

using ::mproc::detail::ChunkTask;
using ::mproc::detail::code_ref_of;

Dispatcher* g_dispatcher = nullptr;

std::exception_ptr error_of(const TaskResult& result, const std::string& where) {
    switch (result.outcome) {
        case Outcome::task_error:
            return std::make_exception_ptr(TaskError(result.type_name, result.message));
        case Outcome::worker_lost:
            return std::make_exception_ptr(
                WorkerLostError(fmt::format("{} ({})", result.message, where), result.pid, result.exitcode));
        case Outcome::timeout:
            return std::make_exception_ptr(TimeoutError(result.message));
        case Outcome::other_error:
            if (result.type_name == "mproc::DecodeError")
                return std::make_exception_ptr(DecodeError(fmt::format("{} ({})", result.message, where)));
            if (result.type_name == "mproc::UsageError") return std::make_exception_ptr(UsageError(result.message));
            return std::make_exception_ptr(ProcessError(result.message));
        case Outcome::value:
            break;
    }
    return std::make_exception_ptr(ProcessError("a task result of an unknown kind (" + where + ")"));
}

constexpr std::size_t kBatchBytes = 4u << 20;  // a larger batch is sent in several messages
constexpr std::chrono::microseconds kSpinWhileTasksOut{2000};
constexpr std::chrono::microseconds kSpinWhenIdle{50};

}  // namespace

Dispatcher::Dispatcher(const Runtime& runtime) : runtime_(runtime), messenger_(runtime.comm), ranks_(static_cast<std::size_t>(runtime.size)) {
    ranks_[0].alive = false;  // rank 0 runs main, it serves no tasks
    thread_ = std::thread([this] { loop(); });
}

Dispatcher::~Dispatcher() {
    if (thread_.joinable()) thread_.join();
}

// ---- the pool's side ---------------------------------------------------------------------------

void Dispatcher::request(std::unique_lock<std::mutex>& lock, Command command) {
    command_ = command;
    command_done_ = false;
    wake_.notify_one();
    changed_.wait(lock, [this] { return command_done_; });
    command_ = Command::none;
}

Dispatcher::Shape Dispatcher::open_pool(const PoolSpec& spec, std::size_t chunks_in_flight_per_worker) {
    std::unique_lock lock(mutex_);
    if (pool_open_) throw UsageError("an mproc::mpi::Pool already exists: the serving ranks serve one pool at a time");
    if (stopping_) throw UsageError("mproc::mpi::Pool: the program is ending");
    pool_open_ = true;
    finished_ = false;
    spec_ = spec;
    spec_->pool_id = next_pool_id_++;
    chunks_per_worker_ = std::max<std::size_t>(chunks_in_flight_per_worker, 1);
    start_errors_.clear();
    request(lock, Command::start);
    if (shape_.ranks == 0) {
        pool_open_ = false;
        finished_ = true;
        throw ProcessError("mproc::mpi::Pool: no serving rank could start its pool" +
                           (start_errors_.empty() ? std::string(" (every rank was lost)") : start_errors_));
    }
    if (!start_errors_.empty())
        std::fprintf(stderr, "mproc::mpi: the pool goes on without the ranks that could not start theirs:%s\n", start_errors_.c_str());
    accepting_ = true;
    return shape_;
}

std::uint32_t Dispatcher::site_of(const ::mproc::detail::CallSite& site) {
    const auto key = std::make_pair(site.entry, site.function);
    if (auto it = site_ids_.find(key); it != site_ids_.end()) return it->second;
    SiteDefinition definition;
    definition.id = static_cast<std::uint32_t>(sites_.size());
    definition.entry = code_ref_of(site.entry);
    if (site.function != nullptr) definition.function = code_ref_of(site.function);
    sites_.push_back(definition);
    site_ids_.emplace(key, definition.id);
    return definition.id;
}

void Dispatcher::submit(std::vector<ChunkTask> tasks) {
    std::lock_guard lock(mutex_);
    if (!accepting_) throw UsageError("Pool not running");
    std::vector<std::uint32_t> sites;
    sites.reserve(tasks.size());
    for (const auto& task : tasks) sites.push_back(site_of(task.site));  // UsageError before anything is queued
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        queued_.push_back(Task{next_task_id_++, sites[i], std::move(tasks[i].arguments), std::move(tasks[i].sink), tasks[i].chunk});
    }
    unsettled_ += tasks.size();
    wake_.notify_one();
}

bool Dispatcher::accepting() const {
    std::lock_guard lock(mutex_);
    return accepting_;
}

Dispatcher::Shape Dispatcher::shape() const {
    std::lock_guard lock(mutex_);
    return shape_;
}

void Dispatcher::close_pool() {
    std::lock_guard lock(mutex_);
    accepting_ = false;
}

void Dispatcher::terminate_pool() {
    std::unique_lock lock(mutex_);
    accepting_ = false;
    if (!pool_open_ || finished_) return;
    request(lock, Command::terminate);
    finished_ = true;
}

void Dispatcher::join_pool() {
    std::unique_lock lock(mutex_);
    if (accepting_) throw UsageError("Pool is still running");
    if (!pool_open_ || finished_) return;
    changed_.wait(lock, [this] { return unsettled_ == 0; });
    request(lock, Command::end);
    finished_ = true;
}

void Dispatcher::release_pool() {
    std::lock_guard lock(mutex_);
    pool_open_ = false;
    spec_.reset();
}

bool Dispatcher::stop() {
    {
        std::unique_lock lock(mutex_);
        stopping_ = true;
        wake_.notify_one();
        changed_.wait(lock, [this] { return stopped_; });
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    return !any_lost_;
}

// ---- the dispatcher thread ---------------------------------------------------------------------

void Dispatcher::loop() {
    for (;;) {
        bool busy = receive_all();
        Command requested = Command::none;
        bool stopping = false;
        {
            std::lock_guard lock(mutex_);
            if (command_ != Command::none && !command_done_) requested = command_;
            while (!queued_.empty()) {
                pending_.push_back(std::move(queued_.front()));
                queued_.pop_front();
                busy = true;
            }
            stopping = stopping_;
        }
        busy |= progress_command(requested);
        busy |= dispatch();
        busy |= check_heartbeats();
        const bool sends_done = messenger_.progress();

        if (stopping && active_ == Command::none) {
            bool finalize = false;
            {
                std::lock_guard lock(mutex_);
                finalize = !any_lost_;
            }
            // Lost ranks are told too: one that is alive after all (it sent what rank 0 could not
            // read, or went quiet for a while) ends now rather than after its own timeout. A dead
            // one cannot take the message, so its send is waited for a moment only.
            const auto stop = message(ServerMessage::stop, finalize);
            for (std::size_t r = 1; r < ranks_.size(); ++r) messenger_.send(static_cast<int>(r), kToServer, stop);
            const auto wait = std::min<std::chrono::nanoseconds>(runtime_.options.heartbeat_timeout, std::chrono::seconds(1));
            if (!messenger_.drain(::mproc::detail::Deadline::after(wait)))
                for (std::size_t r = 1; r < ranks_.size(); ++r)
                    if (!ranks_[r].alive) messenger_.forget(static_cast<int>(r));
            messenger_.drain(::mproc::detail::Deadline::after(runtime_.options.heartbeat_timeout));
            std::lock_guard lock(mutex_);
            stopped_ = true;
            changed_.notify_all();
            return;
        }

        if (busy) backoff_.active();
        // While tasks are out, their answers are due within a round trip: keep polling for them.
        bool waiting_for_answers = false;
        for (const auto& rank : ranks_) waiting_for_answers |= !rank.in_flight.empty() || (rank.alive && rank.awaiting);
        auto wait = backoff_.next_wait(waiting_for_answers ? kSpinWhileTasksOut : kSpinWhenIdle);
        if (!sends_done) wait = std::min(wait, std::chrono::microseconds(50));
        if (wait == std::chrono::microseconds::zero()) {
            backoff_.between_polls();
            continue;
        }
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, wait, [this] {
            return !queued_.empty() || stopping_ || (command_ != Command::none && !command_done_ && active_ == Command::none);
        });
    }
}

bool Dispatcher::receive_all() {
    bool any = false;
    while (auto received = messenger_.receive(MPI_ANY_SOURCE, kToRoot)) {
        any = true;
        handle(received->source, received->bytes());
    }
    return any;
}

void Dispatcher::handle(int source, std::span<const std::byte> bytes) {
    if (source <= 0 || static_cast<std::size_t>(source) >= ranks_.size()) return;
    Rank& rank = ranks_[static_cast<std::size_t>(source)];
    if (!rank.alive) return;  // a lost rank's late words
    rank.last_heard = Clock::now();
    try {
        Decoder in(bytes);
        const auto kind = static_cast<RootMessage>(in.read<std::uint8_t>());
        switch (kind) {
            case RootMessage::ready: {
                const auto ready = in.read<Ready>();
                if (ready.pool_id != pool_id_ || !rank.awaiting) return;
                rank.awaiting = false;
                rank.in_pool = true;
                rank.workers = std::max(ready.workers, 1);
                rank.pid = ready.pid;
                rank.host = ready.host;
                rank.window = static_cast<std::size_t>(rank.workers) * chunks_per_worker_;
                return;
            }
            case RootMessage::start_failed: {
                const auto why = in.read<std::string>();
                rank.awaiting = false;
                rank.in_pool = false;
                std::lock_guard lock(mutex_);
                start_errors_ += fmt::format("\n  {}: {}", describe(source), why);
                return;
            }
            case RootMessage::results: {
                const auto results = in.read<std::vector<TaskResult>>();
                std::size_t settled = 0;
                for (const auto& result : results) {
                    auto it = rank.in_flight.find(result.id);
                    if (it == rank.in_flight.end()) continue;  // failed already (terminate)
                    Task task = std::move(it->second);
                    rank.in_flight.erase(it);
                    settle(task, result, source);
                    ++settled;
                }
                count_settled(settled);
                return;
            }
            case RootMessage::ended: {
                if (in.read<std::uint64_t>() != pool_id_) return;
                rank.awaiting = false;
                rank.in_pool = false;
                return;
            }
            case RootMessage::heartbeat:
                return;
            case RootMessage::protocol_error:
                lose(source, "it could not read a message from rank 0: " + in.read<std::string>());
                return;
        }
        lose(source, fmt::format("it sent a message of unknown kind {}", static_cast<int>(kind)));
    } catch (const std::exception& e) {
        lose(source, std::string("it sent a message rank 0 could not read: ") + e.what());
    }
}

bool Dispatcher::progress_command(Command requested) {
    bool busy = false;
    if (active_ == Command::none && requested != Command::none) {
        active_ = requested;
        busy = true;
        if (requested == Command::start) {
            PoolSpec spec;
            {
                std::lock_guard lock(mutex_);
                spec = *spec_;
            }
            pool_id_ = spec.pool_id;
            const auto start = message(ServerMessage::start, spec);
            for (std::size_t r = 1; r < ranks_.size(); ++r) {
                Rank& rank = ranks_[r];
                if (!rank.alive) continue;
                rank.in_pool = false;
                rank.awaiting = true;
                rank.sites_known.clear();
                rank.last_heard = Clock::now();  // a full timeout to answer
                messenger_.send(static_cast<int>(r), kToServer, start);
            }
        } else {
            if (requested == Command::terminate) {
                const auto error = std::make_exception_ptr(ProcessError("pool terminated"));
                std::size_t failed = 0;
                for (auto& task : pending_) fail(task, error), ++failed;
                pending_.clear();
                for (auto& rank : ranks_) {
                    for (auto& [id, task] : rank.in_flight) fail(task, error), ++failed;
                    rank.in_flight.clear();
                }
                count_settled(failed);
            }
            const auto bytes = message(requested == Command::end ? ServerMessage::end : ServerMessage::terminate, pool_id_);
            for (std::size_t r = 1; r < ranks_.size(); ++r) {
                Rank& rank = ranks_[r];
                if (!rank.alive || !rank.in_pool) continue;
                rank.awaiting = true;
                messenger_.send(static_cast<int>(r), kToServer, bytes);
            }
        }
    }
    if (active_ == Command::none) return busy;
    for (const auto& rank : ranks_)
        if (rank.alive && rank.awaiting) return busy;
    // Every rank answered or was lost.
    Shape shape;
    for (auto& rank : ranks_) {
        if (active_ != Command::start) rank.in_pool = false;
        if (rank.alive && rank.in_pool) {
            shape.processes += rank.workers;
            ++shape.ranks;
        }
    }
    std::lock_guard lock(mutex_);
    if (active_ == Command::start) shape_ = shape;
    active_ = Command::none;
    command_done_ = true;
    changed_.notify_all();
    return true;
}

bool Dispatcher::dispatch() {
    if (pending_.empty() || active_ == Command::start) return false;
    std::vector<std::size_t> open;
    bool any_rank = false;
    for (std::size_t r = 1; r < ranks_.size(); ++r) {
        const Rank& rank = ranks_[r];
        if (!rank.alive || !rank.in_pool) continue;
        any_rank = true;
        if (rank.in_flight.size() < rank.window) open.push_back(r);
    }
    if (!any_rank) {
        // Every serving rank of this pool is lost: nothing can run the rest.
        const auto error = std::make_exception_ptr(
            WorkerLostError("every serving MPI rank of the pool was lost; the task was not run", 0, 0));
        std::size_t failed = 0;
        for (auto& task : pending_) fail(task, error), ++failed;
        pending_.clear();
        count_settled(failed);
        return true;
    }
    if (open.empty()) return false;
    // Round robin, one task at a time, so that a short input spreads over every rank, starting
    // where the last dispatch stopped, so that tasks submitted one by one spread too.
    std::rotate(open.begin(), open.begin() + static_cast<std::ptrdiff_t>(next_rank_++ % open.size()), open.end());

    std::vector<TaskBatch> batches(ranks_.size());
    std::vector<std::size_t> batch_bytes(ranks_.size(), 0);
    auto send_batch = [&](std::size_t r) {
        TaskBatch& batch = batches[r];
        if (batch.tasks.empty()) return;
        batch.pool_id = pool_id_;
        messenger_.send(static_cast<int>(r), kToServer, message(ServerMessage::tasks, batch));
        batch = TaskBatch{};
        batch_bytes[r] = 0;
    };
    bool sent = false;
    while (!pending_.empty() && !open.empty()) {
        for (auto it = open.begin(); it != open.end() && !pending_.empty();) {
            const std::size_t r = *it;
            Rank& rank = ranks_[r];
            Task task = std::move(pending_.front());
            pending_.pop_front();
            if (rank.sites_known.size() <= task.site) rank.sites_known.resize(task.site + 1, false);
            if (!rank.sites_known[task.site]) {
                std::lock_guard lock(mutex_);  // the pool's threads add sites; defined ones do not change
                batches[r].sites.push_back(sites_.at(task.site));
                rank.sites_known[task.site] = true;
            }
            batch_bytes[r] += task.arguments.size() + 16;
            batches[r].tasks.push_back(TaskMessage{task.id, task.site, std::move(task.arguments)});
            rank.in_flight.emplace(task.id, std::move(task));
            sent = true;
            if (batch_bytes[r] >= kBatchBytes) send_batch(r);
            it = rank.in_flight.size() >= rank.window ? open.erase(it) : std::next(it);
        }
    }
    for (std::size_t r = 1; r < ranks_.size(); ++r) send_batch(r);
    return sent;
}

bool Dispatcher::check_heartbeats() {
    const auto now = Clock::now();
    bool busy = false;
    for (std::size_t r = 1; r < ranks_.size(); ++r) {
        const Rank& rank = ranks_[r];
        if (!rank.alive || now - rank.last_heard <= runtime_.options.heartbeat_timeout) continue;
        lose(static_cast<int>(r), fmt::format("nothing heard from it for {} ms", runtime_.options.heartbeat_timeout.count()));
        busy = true;
    }
    if (now - last_ping_ >= runtime_.options.heartbeat_interval) {
        last_ping_ = now;
        const auto ping = message(ServerMessage::ping);
        for (std::size_t r = 1; r < ranks_.size(); ++r)
            if (ranks_[r].alive) messenger_.send(static_cast<int>(r), kToServer, ping);
    }
    return busy;
}

std::string Dispatcher::describe(int rank) const {
    const Rank& r = ranks_[static_cast<std::size_t>(rank)];
    if (r.host.empty()) return fmt::format("MPI rank {}", rank);
    return fmt::format("MPI rank {} on {} (pid {})", rank, r.host, r.pid);
}

void Dispatcher::lose(int index, const std::string& why) {
    Rank& rank = ranks_[static_cast<std::size_t>(index)];
    rank.alive = false;
    rank.awaiting = false;
    const bool was_in_pool = rank.in_pool;
    rank.in_pool = false;
    messenger_.forget(index);
    const std::string what = fmt::format("{} was lost: {}", describe(index), why);
    std::fprintf(stderr, "mproc::mpi: %s; %zu task(s) it held fail with WorkerLostError\n", what.c_str(), rank.in_flight.size());
    {
        // Before the tasks fail: whoever sees their errors sees the pool without the rank.
        std::lock_guard lock(mutex_);
        any_lost_ = true;
        if (was_in_pool && active_ != Command::start) {
            shape_.processes -= rank.workers;
            shape_.ranks -= 1;
        }
    }
    const auto error = std::make_exception_ptr(WorkerLostError(what, rank.pid, 0));
    std::size_t failed = 0;
    for (auto& [id, task] : rank.in_flight) fail(task, error), ++failed;
    rank.in_flight.clear();
    count_settled(failed);
}

void Dispatcher::settle(Task& task, const TaskResult& result, int rank) {
    if (result.outcome == Outcome::value) {
        try {
            task.sink->deliver(task.chunk, result.value);
        } catch (...) {
            // A sink settles its own decoding errors; nothing else may stop the dispatcher.
        }
        return;
    }
    fail(task, error_of(result, describe(rank)));
}

void Dispatcher::fail(Task& task, const std::exception_ptr& error) {
    try {
        task.sink->fail(task.chunk, error);
    } catch (...) {
    }
}

void Dispatcher::count_settled(std::size_t count) {
    if (count == 0) return;
    std::lock_guard lock(mutex_);
    unsettled_ -= std::min(count, unsettled_);
    if (unsettled_ == 0) changed_.notify_all();
}

// ---- the one dispatcher of rank 0 --------------------------------------------------------------

void start_dispatcher(const Runtime& runtime) { g_dispatcher = new Dispatcher(runtime); }

void stop_dispatcher() {
    Dispatcher* dispatcher = std::exchange(g_dispatcher, nullptr);
    if (dispatcher == nullptr) return;
    const bool finalize = dispatcher->stop();
    delete dispatcher;
    // MPI_Finalize waits for every rank; after a rank was lost it would wait forever (Open MPI
    // under --enable-recovery), so the program ends without it, which mpirun accepts there.
    if (finalize) MPI_Finalize();
}

Dispatcher* dispatcher() noexcept { return g_dispatcher; }

}  // namespace mproc::mpi::detail
