#pragma once
// Rank 0's dispatcher (mpi floor): one thread that owns every MPI call of rank 0 after init. It
// sends chunks to the serving ranks in batches, at most a window per rank in flight, settles their
// results, exchanges heartbeats and declares lost a rank it has not heard from in time. The
// mpi::Pool of the moment talks to it through the public calls, from any thread.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mpi/backoff.hpp"
#include "mpi/messenger.hpp"
#include "mpi/protocol.hpp"
#include "mpi/runtime.hpp"
#include "mproc/detail/pool_task.hpp"

namespace mproc::mpi::detail {

class Dispatcher {
public:
    explicit Dispatcher(const Runtime& runtime);
    ~Dispatcher();
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    struct Shape {
        int processes = 0;
        int ranks = 0;
    };

    // ---- the pool's side, one pool at a time ----
    // Starts a local pool on every serving rank; returns when each is ready or lost.
    Shape open_pool(const PoolSpec& spec, std::size_t chunks_in_flight_per_worker);
    void submit(std::vector<::mproc::detail::ChunkTask> tasks);
    bool accepting() const;
    Shape shape() const;
    void close_pool();
    void terminate_pool();
    // Waits for every task to settle, then ends the ranks' local pools.
    void join_pool();
    // The pool object is gone: another may be made.
    void release_pool();

    // The end of rank 0's program: the serving ranks are told to exit. True when MPI may be
    // finalized (no rank was lost: MPI_Finalize would wait for a lost one forever).
    bool stop();

private:
    using Clock = std::chrono::steady_clock;

    struct Task {
        std::uint64_t id = 0;
        std::uint32_t site = 0;
        std::vector<std::byte> arguments;
        std::shared_ptr<::mproc::detail::ResultSink> sink;
        std::size_t chunk = 0;
    };
    struct Rank {
        bool alive = true;
        bool in_pool = false;
        bool awaiting = false;  // a start, end or terminate it has not answered yet
        int workers = 0;
        int pid = 0;
        std::string host;
        std::size_t window = 0;
        Clock::time_point last_heard = Clock::now();
        std::unordered_map<std::uint64_t, Task> in_flight;
        std::vector<bool> sites_known;
    };
    enum class Command { none, start, end, terminate };

    void loop();
    bool receive_all();
    void handle(int source, std::span<const std::byte> bytes);
    // The pool's thread: asks the dispatcher to run `command` and waits until it has.
    void request(std::unique_lock<std::mutex>& lock, Command command);
    bool progress_command(Command requested);
    bool dispatch();
    bool check_heartbeats();
    void lose(int rank, const std::string& why);
    void settle(Task& task, const TaskResult& result, int rank);
    void fail(Task& task, const std::exception_ptr& error);
    void count_settled(std::size_t count);
    std::uint32_t site_of(const ::mproc::detail::CallSite& site);  // under mutex_
    std::string describe(int rank) const;

    const Runtime& runtime_;
    Messenger messenger_;

    // Shared with the pool's threads.
    mutable std::mutex mutex_;
    std::condition_variable wake_;     // the dispatcher: work or a command
    std::condition_variable changed_;  // the pool's threads: a command done, tasks settled
    bool pool_open_ = false;
    bool accepting_ = false;
    bool stopping_ = false;
    bool stopped_ = false;
    bool any_lost_ = false;
    Command command_ = Command::none;
    bool command_done_ = false;
    bool finished_ = false;  // the pool's ranks were ended or terminated
    std::optional<PoolSpec> spec_;
    std::size_t chunks_per_worker_ = 8;
    std::deque<Task> queued_;
    std::size_t unsettled_ = 0;
    std::uint64_t next_task_id_ = 1;
    std::uint64_t next_pool_id_ = 1;
    Shape shape_;
    std::string start_errors_;
    std::map<std::pair<const void*, const void*>, std::uint32_t> site_ids_;
    std::vector<SiteDefinition> sites_;

    // The dispatcher thread's own.
    std::vector<Rank> ranks_;
    std::deque<Task> pending_;
    std::uint64_t pool_id_ = 0;
    Command active_ = Command::none;
    std::size_t next_rank_ = 0;  // where the next dispatch's round robin starts
    IdleBackoff backoff_;
    Clock::time_point last_ping_ = Clock::now();
    std::thread thread_;
};

void start_dispatcher(const Runtime& runtime);
// At exit of rank 0: the serving ranks are told to exit, and MPI is finalized when it can be.
void stop_dispatcher();
// Null when init did not start one (one rank only).
Dispatcher* dispatcher() noexcept;

}  // namespace mproc::mpi::detail
