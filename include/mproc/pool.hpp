#pragma once
// Pool: a fixed set of worker processes that run tasks (Python's multiprocessing.pool.Pool), and
// BasicPool, the interface every pool of mproc offers: the calls (apply, map, starmap, imap, close,
// terminate, join) are written once, in BasicPool, over what an implementation provides (how many
// tasks run at once, taking chunks of work, whether it still takes them). Pool runs the chunks on
// local worker processes; mproc::mpi::Pool (docs/mpi.md) on the ranks of an MPI job. Code written
// against `BasicPool&` runs on either.
//
//   int square(int x) { return x * x; }
//   mproc::Pool pool({.processes = 4});
//   std::vector<int> squares = pool.map(square, std::views::iota(0, 1000));
//   mproc::AsyncResult<int> r = pool.apply_async(square, 12);
//   int v = r.get(std::chrono::seconds(1));
//
// A pool that never hangs, where Python's can:
//  - A worker that dies while running a task (SIGKILL, a crash, an exit) fails that task with
//    WorkerLostError, which carries the worker's exit code; the tasks it had not started go to the
//    other workers, a replacement worker is started, and the pool goes on.
//  - `task_timeout` kills and replaces a worker whose task runs too long; the task fails with
//    TimeoutError.
//  - No task is lost: after join() returns, every AsyncResult the pool handed out is ready (a
//    value, the task's error, WorkerLostError, TimeoutError or the terminate error), whatever
//    happened meanwhile: after close(), workers that retire (maxtasksperchild) or die are replaced
//    for as long as queued tasks remain.
//  - terminate() fails every unfinished task (ProcessError "pool terminated") instead of leaving
//    its result unready forever.
//  - imap/imap_unordered take their input lazily, with a bounded number of tasks in flight, so an
//    endless input runs in bounded memory.
//
// What a task is: the function must be able to travel to a worker whatever the start method,
// because workers exist before the task does: a function (free or static member) or a lambda
// without captures, with Encodable arguments and an Encodable result (codec.hpp). Anything else
// is a compile-time error. A void function's result is mproc::None.
//
// One thread in the parent (the dispatcher) feeds the workers and collects results over one
// socketpair per worker; callbacks run on it, so they must be quick. An exception from a callback
// is logged and does not stop the pool. A task's exception reaches get() as TaskError, carrying the
// original type name and message.
//
// Lifetime: Pool's destructor does what Python's `with Pool() as p:` does on exit, terminate():
// call close() and join() first to let queued work finish.
//
// This header shows the API; what the templates build (the task entries a worker runs, the result
// sinks, the state an AsyncResult shares with the dispatcher) is in detail/pool_task.hpp and
// detail/pool_results.hpp, and their definitions follow class Pool.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/context.hpp"
#include "mproc/detail/pool_results.hpp"
#include "mproc/detail/pool_task.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"

namespace mproc {

// The result of a function that returns nothing.
using None = std::monostate;

// A worker died while running the task.
class WorkerLostError : public ProcessError {
public:
    WorkerLostError(const std::string& message, int pid, int exitcode)
        : ProcessError(message), pid_(pid), exitcode_(exitcode) {}
    int pid() const noexcept { return pid_; }
    // The worker's exit code: the code it passed to exit, or -N for signal N.
    int exitcode() const noexcept { return exitcode_; }

private:
    int pid_;
    int exitcode_;
};

// A task threw: the exception's type name and message, as the worker saw them. A RemoteError
// (errors.hpp): an exception thrown in another process, carried back as its name and message.
class TaskError : public RemoteError {
public:
    using RemoteError::RemoteError;
};

// A call to run once in every worker when it starts (Python's initializer + initargs):
//   mproc::Pool pool({.initializer = start_process});
//   mproc::Pool pool({.initializer = {setup, std::string("config.toml"), 3}});
class Initializer {
public:
    Initializer() = default;
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    Initializer(F&& function, Args&&... args)  // NOLINT: implicit, for `.initializer = f`
        : target_(detail::make_target(std::forward<F>(function), std::forward<Args>(args)...)) {
        using Fn = std::decay_t<F>;
        static_assert(detail::is_function_pointer<Fn> || detail::is_stateless_callable<Fn>,
                      "a Pool initializer must be a function or a lambda without captures: it runs in workers "
                      "that may be started anew");
        static_assert((Encodable<std::decay_t<Args>> && ...), "a Pool initializer's arguments must be Encodable");
    }
    explicit operator bool() const noexcept { return target_ != nullptr; }
    const std::shared_ptr<detail::Target>& target() const noexcept { return target_; }

private:
    std::shared_ptr<detail::Target> target_;
};

struct PoolOptions {
    // Unset: process_cpu_count(). UsageError "Number of processes must be at least 1" below 1.
    std::optional<int> processes{};
    Initializer initializer{};
    // A worker exits after this many tasks (chunks) and is replaced (after close(), while queued
    // tasks remain). Unset: never.
    std::optional<int> maxtasksperchild{};
    // The start method of the workers. Unset: the default (context.hpp).
    std::optional<StartMethod> context{};
    // A task running longer is failed with TimeoutError and its worker killed and replaced. Counted
    // from when the worker begins the task: its own start-up and the task's wait do not count.
    std::optional<std::chrono::milliseconds> task_timeout{};
};

// Called as work completes: (tasks done, tasks in all); from the dispatcher thread.
using ProgressCallback = std::function<void(std::size_t done, std::size_t total)>;

template <class R>
struct MapOptions {
    // Items per task. Unset: Python's rule, ceil(len / (4 × processes)).
    std::optional<std::size_t> chunksize{};
    ProgressCallback on_progress{};
    // map_async: called with the results, or with the error, on the dispatcher thread.
    std::function<void(const std::vector<R>&)> callback{};
    std::function<void(const std::exception_ptr&)> error_callback{};
};

template <class R>
struct ApplyOptions {
    std::function<void(const R&)> callback{};
    std::function<void(const std::exception_ptr&)> error_callback{};
};

// The outcome of an asynchronous call (Python's AsyncResult / ApplyResult / MapResult).
template <class T>
class AsyncResult {
public:
    // Waits for the result and returns it, or throws the task's error (TaskError, WorkerLostError,
    // TimeoutError for a task that ran past the pool's task_timeout). With a timeout: TimeoutError
    // when it passes first.
    T get() {
        wait();
        return take();
    }
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        if (!wait(timeout)) throw TimeoutError("the result is not ready yet");
        return take();
    }

    void wait() const {
        // Collecting the answer here, where the pool allows it, spares a wake-up; otherwise the
        // pool's dispatcher delivers it.
        state_->help_until(std::chrono::steady_clock::time_point::max());
        if (state_->await_briefly()) return;
        std::unique_lock lock(state_->mutex);
        state_->ready_changed.wait(lock, [this] { return state_->ready; });
    }
    // True when the result became ready within `timeout`.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        if (timeout > std::chrono::duration<Rep, Period>::zero()) {
            const auto now = std::chrono::steady_clock::now();
            const auto left = std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
            state_->help_until(left < std::chrono::steady_clock::time_point::max() - now
                                   ? now + left
                                   : std::chrono::steady_clock::time_point::max());
            if (state_->await_briefly(std::min<std::chrono::nanoseconds>(
                    std::chrono::microseconds(50), std::chrono::ceil<std::chrono::nanoseconds>(timeout))))
                return true;
        }
        std::unique_lock lock(state_->mutex);
        return state_->ready_changed.wait_for(lock, timeout, [this] { return state_->ready; });
    }

    bool ready() const {
        std::lock_guard lock(state_->mutex);
        return state_->ready;
    }
    // UsageError before ready (Python: ValueError "... not ready").
    bool successful() const {
        std::lock_guard lock(state_->mutex);
        if (!state_->ready) throw UsageError("the result is not ready");
        return !state_->error;
    }

private:
    friend class BasicPool;
    explicit AsyncResult(std::shared_ptr<detail::ResultState<T>> state) : state_(std::move(state)) {}
    T take() {
        std::lock_guard lock(state_->mutex);
        if (state_->error) std::rethrow_exception(state_->error);
        return *state_->value;
    }
    std::shared_ptr<detail::ResultState<T>> state_;
};

// The results of imap/imap_unordered, as an input range: `for (auto& r : pool.imap(f, items))`.
// Input is taken lazily: at most a bounded number of chunks are in flight, topped up as results
// are taken. next(timeout) throws TimeoutError when nothing arrives in time.
// An exception thrown by the input's iteration (Python: an iterable that raises part-way) is not
// lost and does not overtake: the results of the chunks taken before it come first (imap_unordered
// too), then next() rethrows the input's own exception, and the iteration ends there. The items
// of the chunk that was being gathered when it threw are not run, as in Python.
template <class R>
class IMapIterator {
public:
    // The next result; nullopt at the end. Rethrows a chunk's error.
    std::optional<R> next() { return next_impl(std::nullopt); }
    template <class Rep, class Period>
    std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
        return next_impl(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { advance(); }
        const R& operator*() const { return *current_; }
        const R* operator->() const { return &*current_; }
        iterator& operator++() {
            advance();
            return *this;
        }
        void operator++(int) { advance(); }
        friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.current_; }

    private:
        void advance() { current_ = owner_->next(); }
        IMapIterator* owner_ = nullptr;
        std::optional<R> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

private:
    friend class BasicPool;
    explicit IMapIterator(std::shared_ptr<detail::ImapFeed<R>> feed) : feed_(std::move(feed)) {}
    std::optional<R> next_impl(std::optional<std::chrono::nanoseconds> timeout);

    std::shared_ptr<detail::ImapFeed<R>> feed_;
    std::size_t taken_ = 0;
    std::vector<R> buffer_;
    std::size_t buffer_pos_ = 0;
};

// What every pool offers. The templates turn a call into chunks of encoded work (detail::ChunkTask)
// and hand them to submit(); an implementation runs them wherever its workers are and delivers
// each chunk's outcome to the chunk's sink. The guarantees above that name no local process (no
// task lost, terminate() fails what is unfinished, imap's bounded input) hold for every
// implementation.
class BasicPool {
public:
    virtual ~BasicPool();
    BasicPool(const BasicPool&) = delete;
    BasicPool& operator=(const BasicPool&) = delete;

    // How many tasks can run at once (the workers).
    virtual int processes() const noexcept = 0;

    // ---- apply ----
    template <class F, class... Args>
    auto apply_async(F&& function, Args&&... args) {
        return apply_async(ApplyOptions<detail::call_result_t<std::decay_t<F>, std::decay_t<Args>...>>{},
                           std::forward<F>(function), std::forward<Args>(args)...);
    }
    template <class F, class... Args>
    auto apply_async(ApplyOptions<detail::call_result_t<std::decay_t<F>, std::decay_t<Args>...>> options,
                     F&& function, Args&&... args) {
        detail::check_task<std::decay_t<F>, std::decay_t<Args>...>();
        return apply_like(std::move(options), std::forward<F>(function), std::forward<Args>(args)...);
    }
    template <class F, class... Args>
    auto apply(F&& function, Args&&... args) {
        return apply_async(std::forward<F>(function), std::forward<Args>(args)...).get();
    }

    // ---- map ----
    // map, map_async, starmap and starmap_async read the whole input in the calling thread before
    // any task is sent (Python's map turns its iterable into a list first): an exception thrown by
    // the input's iteration comes out of the call itself, as it is, and nothing runs.
    template <class F, std::ranges::input_range Range>
    auto map_async(F function, Range&& items,
                   MapOptions<detail::call_result_t<F, std::ranges::range_value_t<Range>>> options = {}) {
        using T = std::ranges::range_value_t<Range>;
        detail::check_task<F, T>();
        return map_like<F, T, detail::call_result_t<F, T>>(&detail::run_map_chunk<F, T>, function,
                                                            std::forward<Range>(items), std::move(options));
    }
    template <class F, std::ranges::input_range Range>
    auto map(F function, Range&& items,
             MapOptions<detail::call_result_t<F, std::ranges::range_value_t<Range>>> options = {}) {
        return map_async(function, std::forward<Range>(items), std::move(options)).get();
    }
    template <class F, std::ranges::input_range Range>
    auto map(F function, Range&& items, std::size_t chunksize) {
        MapOptions<detail::call_result_t<F, std::ranges::range_value_t<Range>>> options;
        options.chunksize = chunksize;
        return map(function, std::forward<Range>(items), std::move(options));
    }

    // ---- starmap: every item is a tuple (or pair) of arguments ----
    template <class F, std::ranges::input_range Range>
    auto starmap_async(F function, Range&& items,
                       MapOptions<typename detail::StarResult<F, std::ranges::range_value_t<Range>>::type> options = {}) {
        using Tuple = std::ranges::range_value_t<Range>;
        check_star_task<F>(static_cast<Tuple*>(nullptr));
        return map_like<F, Tuple, typename detail::StarResult<F, Tuple>::type>(
            &detail::run_starmap_chunk<F, Tuple>, function, std::forward<Range>(items), std::move(options));
    }
    template <class F, std::ranges::input_range Range>
    auto starmap(F function, Range&& items,
                 MapOptions<typename detail::StarResult<F, std::ranges::range_value_t<Range>>::type> options = {}) {
        return starmap_async(function, std::forward<Range>(items), std::move(options)).get();
    }

    // ---- imap ----
    template <class F, std::ranges::input_range Range>
    auto imap(F function, Range&& items, std::size_t chunksize = 1) {
        return imap_like<F>(function, std::forward<Range>(items), chunksize, true);
    }
    template <class F, std::ranges::input_range Range>
    auto imap_unordered(F function, Range&& items, std::size_t chunksize = 1) {
        return imap_like<F>(function, std::forward<Range>(items), chunksize, false);
    }

    // No new tasks; every queued task still runs (workers that retire or die meanwhile are
    // replaced), then the workers exit. An imap still being read has the rest of its input taken
    // and sent now, so its results keep coming (an endless input makes this endless too).
    virtual void close() = 0;
    // Stops the workers now; unfinished tasks fail with ProcessError("pool terminated").
    virtual void terminate() = 0;
    // Waits for the workers to exit; UsageError("Pool is still running") before close/terminate.
    // When it returns, every AsyncResult of this pool is ready.
    virtual void join() = 0;

protected:
    BasicPool() = default;
    friend struct detail::PoolAccess;

    // Hands chunks to the implementation; UsageError("Pool not running") once closed or terminated.
    virtual void submit(std::vector<detail::ChunkTask> tasks) = 0;
    // Whether submit() still takes chunks; check_running() throws UsageError("Pool not running")
    // when not.
    virtual bool running() const noexcept = 0;
    // Where a thread waiting for a result may collect answers itself (detail::WaitHelper); none by
    // default.
    virtual std::weak_ptr<detail::WaitHelper> wait_helper() const noexcept { return {}; }

    // Sends the rest of the input of every imap started before close(), while the pool still takes
    // tasks, so that their results keep coming (read lazily until here; Python's task handler reads
    // it all at once). An implementation's close() calls this first.
    void send_open_inputs();
    // Registers an imap's input, whose rest send_open_inputs() sends.
    void watch_input(const std::shared_ptr<detail::InputFeed>& feed);
    // Items per map task when the caller gives none: Python's rule, ceil(items / (4 × processes())).
    std::size_t default_chunksize(std::size_t items) const;
    // How many imap chunks may be in flight beyond those taken.
    std::size_t imap_window() const;
    void check_running() const;

private:
    template <class F, class... Args>
    static void check_star_task(std::tuple<Args...>*) {
        detail::check_task<F, Args...>();
    }
    template <class F, class A, class B>
    static void check_star_task(std::pair<A, B>*) {
        detail::check_task<F, A, B>();
    }

    template <class F, class... Args, class R = detail::call_result_t<std::decay_t<F>, std::decay_t<Args>...>>
    AsyncResult<R> apply_like(ApplyOptions<R> options, F&& function, Args&&... args);
    template <class F, class T, class R, class Range>
    AsyncResult<std::vector<R>> map_like(detail::ChunkEntry entry, F function, Range&& items, MapOptions<R> options);
    template <class F, class Range>
    auto imap_like(F function, Range&& items, std::size_t chunksize, bool ordered);

    std::mutex inputs_mutex_;
    std::vector<std::weak_ptr<detail::InputFeed>> inputs_;  // imaps whose input may not be all sent
};

// The pool of local worker processes.
class Pool final : public BasicPool {
public:
    explicit Pool(PoolOptions options = {});
    // terminate(), as Python's `with Pool() as p:` on exit, and waits for the dispatcher thread:
    // it has stopped before BasicPool's part of the object goes.
    ~Pool() override;

    int processes() const noexcept override;
    StartMethod start_method() const noexcept;

    void close() override;
    void terminate() override;
    void join() override;

    // The live workers (for monitoring; killing one is a fault the pool survives).
    std::vector<Process> workers() const;

private:
    void submit(std::vector<detail::ChunkTask> tasks) override;
    bool running() const noexcept override;
    std::weak_ptr<detail::WaitHelper> wait_helper() const noexcept override;

    std::unique_ptr<detail::PoolCore> core_;
};

// ---- What the templates above do --------------------------------------------------------------

template <class F, class... Args, class R>
AsyncResult<R> BasicPool::apply_like(ApplyOptions<R> options, F&& function, Args&&... args) {
    using Fn = std::decay_t<F>;
    auto state = std::make_shared<detail::ResultState<R>>();
    state->callback = std::move(options.callback);
    state->error_callback = std::move(options.error_callback);
    state->helper = wait_helper();
    detail::ChunkTask task;
    task.site = detail::call_site<Fn>(&detail::run_apply<Fn, std::decay_t<Args>...>, function);
    task.arguments = dumps(std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
    task.sink = std::make_shared<detail::ApplySink<R>>(state);
    submit(std::vector<detail::ChunkTask>{std::move(task)});
    return AsyncResult<R>(std::move(state));
}

template <class F, class T, class R, class Range>
AsyncResult<std::vector<R>> BasicPool::map_like(detail::ChunkEntry entry, F function, Range&& items, MapOptions<R> options) {
    check_running();
    std::vector<T> all;
    if constexpr (std::ranges::sized_range<Range>) all.reserve(std::ranges::size(items));
    for (auto&& item : items) all.emplace_back(item);
    const std::size_t chunksize = options.chunksize ? *options.chunksize : default_chunksize(all.size());
    if (chunksize == 0) throw UsageError("Chunksize must be 1+, not 0");

    auto state = std::make_shared<detail::ResultState<std::vector<R>>>();
    state->callback = std::move(options.callback);
    state->error_callback = std::move(options.error_callback);
    state->helper = wait_helper();
    std::vector<std::size_t> offsets;
    for (std::size_t begin = 0; begin < all.size(); begin += chunksize) offsets.push_back(begin);
    if (all.empty()) {
        state->set_value({});
        return AsyncResult<std::vector<R>>(std::move(state));
    }
    auto sink = std::make_shared<detail::MapSink<R>>(state, all.size(), offsets, std::move(options.on_progress));
    const detail::CallSite site = detail::call_site<F>(entry, function);
    std::vector<detail::ChunkTask> tasks;
    tasks.reserve(offsets.size());
    for (std::size_t c = 0; c < offsets.size(); ++c) {
        const std::size_t begin = offsets[c];
        const std::size_t end = std::min(all.size(), begin + chunksize);
        detail::ChunkTask task;
        task.site = site;
        const std::vector<T> chunk(std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(begin)),
                                   std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(end)));
        Encoder(task.arguments).write(chunk);
        task.sink = sink;
        task.chunk = c;
        tasks.push_back(std::move(task));
    }
    submit(std::move(tasks));
    return AsyncResult<std::vector<R>>(std::move(state));
}

template <class F, class Range>
auto BasicPool::imap_like(F function, Range&& items, std::size_t chunksize, bool ordered) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::call_result_t<F, T>;
    detail::check_task<F, T>();
    if (chunksize == 0) throw UsageError("Chunksize must be 1+, not 0");
    check_running();
    auto sink = std::make_shared<detail::StreamSink<R>>(ordered);
    // The source owns the range (or a view of it) and walks it as chunks are asked for.
    auto state = std::make_shared<std::tuple<std::views::all_t<Range>, std::ranges::iterator_t<std::views::all_t<Range>>, bool>>(
        std::views::all(std::forward<Range>(items)), std::ranges::iterator_t<std::views::all_t<Range>>{}, false);
    auto source = [state, chunksize]() -> std::optional<std::vector<std::byte>> {
        auto& [range, it, started] = *state;
        if (!started) {
            it = std::ranges::begin(range);
            started = true;
        }
        std::vector<T> chunk;
        while (chunk.size() < chunksize && it != std::ranges::end(range)) {
            chunk.emplace_back(*it);
            ++it;
        }
        if (chunk.empty()) return std::nullopt;
        std::vector<std::byte> bytes;
        Encoder(bytes).write(chunk);
        return bytes;
    };
    auto feed = std::make_shared<detail::ImapFeed<R>>(*this, detail::call_site<F>(&detail::run_map_chunk<F, T>, function),
                                                      std::move(sink), std::move(source), imap_window());
    watch_input(feed);
    return IMapIterator<R>(std::move(feed));
}

template <class R>
std::optional<R> IMapIterator<R>::next_impl(std::optional<std::chrono::nanoseconds> timeout) {
    for (;;) {
        if (buffer_pos_ < buffer_.size()) return std::move(buffer_[buffer_pos_++]);
        {
            std::unique_lock lock(feed_->mutex);
            if (!feed_->input_done) {
                lock.unlock();
                feed_->top_up(taken_, feed_->window);
                lock.lock();
            }
            if (taken_ == feed_->submitted && feed_->input_done) {
                if (feed_->input_error) std::rethrow_exception(std::exchange(feed_->input_error, nullptr));
                return std::nullopt;
            }
        }
        auto outcome = feed_->sink->take(taken_, timeout);
        if (!outcome) throw TimeoutError("no result arrived in time");
        ++taken_;
        if (outcome->error) std::rethrow_exception(outcome->error);
        buffer_ = std::move(outcome->values);
        buffer_pos_ = 0;
    }
}

void detail::PoolAccess::submit(BasicPool& pool, std::vector<ChunkTask> tasks) { pool.submit(std::move(tasks)); }
void detail::PoolAccess::watch_input(BasicPool& pool, const std::shared_ptr<InputFeed>& feed) { pool.watch_input(feed); }
bool detail::PoolAccess::running(const BasicPool& pool) noexcept { return pool.running(); }

}  // namespace mproc
