#pragma once
// Where a pool task's outcome lands (pool floor, machinery of pool.hpp): the state an AsyncResult
// shares with the dispatcher, the sinks of apply, map and imap, and the input side of an imap.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/pool_task.hpp"

namespace mproc::detail {

// Whether a waiter should spin before it sleeps: false while the machine has more runnable tasks
// than CPUs (src/base/spin.hpp's discipline, defined in src/pool/pool.cpp).
bool pool_spin_pays() noexcept;


// Logs an exception that a result callback threw (the pool goes on).
void log_callback_failure(const char* what);

// The state an AsyncResult<T> shares with the pool, which fills it.
template <class T>
struct ResultState {
    mutable std::mutex mutex;
    std::condition_variable ready_changed;
    bool ready = false;
    // `ready`, readable without the mutex: a caller about to wait looks at it for a moment
    // first (await_briefly), because a result that comes within microseconds is cheaper to
    // catch awake than to be woken for.
    std::atomic<bool> ready_seen{false};
    std::optional<T> value;
    std::exception_ptr error;
    std::function<void(const T&)> callback;
    std::function<void(const std::exception_ptr&)> error_callback;
    // The pool that runs the task, if a waiter may collect answers there (WaitHelper).
    std::weak_ptr<WaitHelper> helper;

    // Collects answers on the waiting thread while the pool allows it (see WaitHelper).
    void help_until(std::chrono::steady_clock::time_point until) const {
        if (ready_seen.load(std::memory_order_acquire)) return;
        if (auto pool = helper.lock()) pool->collect_until(ready_seen, until);
    }

    // The callback runs before the result becomes ready, as in Python, so that a caller who
    // waited sees its effects; an exception from it is logged and the result is still set.
    void set_value(T v) {
        {
            std::lock_guard lock(mutex);
            if (ready || settled) return;
            value = std::move(v);
            settled = true;
        }
        if (callback) run_callback([&] { callback(*value); });
        mark_ready();
    }
    void set_error(std::exception_ptr e) {
        {
            std::lock_guard lock(mutex);
            if (ready || settled) return;
            error = std::move(e);
            settled = true;
        }
        if (error_callback) run_callback([&] { error_callback(error); });
        mark_ready();
    }

    // True when the result became ready within a short spin (yielding the CPU), whose length is
    // about a pool's round trip to an idle worker: past it, the caller should sleep on
    // ready_changed. Acquire: what set the result happens before a true answer.
    bool await_briefly(std::chrono::nanoseconds limit = std::chrono::microseconds(50)) const {
        if (ready_seen.load(std::memory_order_acquire)) return true;
        // On a machine with more runnable tasks than CPUs a yield hands the CPU to another task
        // for the rest of its time slice: sleeping, and being woken, is then the faster way.
        if (!pool_spin_pays()) return false;
        const auto until = std::chrono::steady_clock::now() + limit;
        do {
            if (ready_seen.load(std::memory_order_acquire)) return true;
            std::this_thread::yield();
        } while (std::chrono::steady_clock::now() < until);
        return ready_seen.load(std::memory_order_acquire);
    }

private:
    bool settled = false;
    void mark_ready() {
        {
            std::lock_guard lock(mutex);
            ready = true;
            ready_seen.store(true, std::memory_order_release);
        }
        ready_changed.notify_all();
    }
    template <class Fn>
    static void run_callback(Fn&& fn) {
        try {
            fn();
        } catch (const std::exception& e) {
            log_callback_failure(e.what());
        } catch (...) {
            log_callback_failure("an exception that is not a std::exception");
        }
    }
};

// The sink of apply_async: one chunk, one value.
template <class R>
class ApplySink final : public ResultSink {
public:
    explicit ApplySink(std::shared_ptr<ResultState<R>> state) : state_(std::move(state)) {}
    void deliver(std::size_t, std::span<const std::byte> results) override {
        R value;
        try {
            value = loads<R>(results);
        } catch (...) {
            state_->set_error(std::current_exception());
            return;
        }
        state_->set_value(std::move(value));
    }
    void fail(std::size_t, std::exception_ptr error) override { state_->set_error(std::move(error)); }
    bool runs_callbacks() const noexcept override { return state_->callback || state_->error_callback; }

private:
    std::shared_ptr<ResultState<R>> state_;
};

// The sink of map_async: chunks land at their offsets; ready when all have, or at the first error.
// `progress` is the caller's ProgressCallback (pool.hpp).
template <class R>
class MapSink final : public ResultSink {
public:
    MapSink(std::shared_ptr<ResultState<std::vector<R>>> state, std::size_t items,
            std::vector<std::size_t> chunk_offsets, std::function<void(std::size_t, std::size_t)> progress)
        : state_(std::move(state)),
          results_(items),
          offsets_(std::move(chunk_offsets)),
          remaining_(offsets_.size()),
          progress_(std::move(progress)) {}

    void deliver(std::size_t chunk, std::span<const std::byte> bytes) override {
        try {
            auto values = loads<std::vector<R>>(bytes);
            const std::size_t begin = offsets_[chunk];
            for (std::size_t i = 0; i < values.size() && begin + i < results_.size(); ++i)
                results_[begin + i] = std::move(values[i]);
            done_items_ += values.size();
        } catch (...) {
            state_->set_error(std::current_exception());
            return;
        }
        report_progress();
        if (--remaining_ == 0) state_->set_value(std::move(results_));
    }
    void fail(std::size_t, std::exception_ptr error) override {
        --remaining_;
        state_->set_error(std::move(error));
    }
    bool runs_callbacks() const noexcept override {
        return progress_ || state_->callback || state_->error_callback;
    }

private:
    void report_progress() {
        if (!progress_) return;
        try {
            progress_(done_items_, results_.size());
        } catch (...) {
            // A progress display must not fail the work it displays.
        }
    }
    std::shared_ptr<ResultState<std::vector<R>>> state_;
    std::vector<R> results_;
    std::vector<std::size_t> offsets_;
    std::size_t remaining_;
    std::size_t done_items_ = 0;
    std::function<void(std::size_t, std::size_t)> progress_;
};

// The sink of imap/imap_unordered: finished chunks wait here until the iterator takes them.
template <class R>
class StreamSink final : public ResultSink {
public:
    explicit StreamSink(bool ordered) : ordered_(ordered) {}

    void deliver(std::size_t chunk, std::span<const std::byte> bytes) override {
        Outcome outcome;
        try {
            outcome.values = loads<std::vector<R>>(bytes);
        } catch (...) {
            outcome.error = std::current_exception();
        }
        store(chunk, std::move(outcome));
    }
    void fail(std::size_t chunk, std::exception_ptr error) override {
        Outcome outcome;
        outcome.error = std::move(error);
        store(chunk, std::move(outcome));
    }

    struct Outcome {
        std::vector<R> values;
        std::exception_ptr error;
    };

    // The next finished chunk (in submission order when ordered); nullopt on timeout.
    std::optional<Outcome> take(std::size_t next_ordered, std::optional<std::chrono::nanoseconds> timeout) {
        std::unique_lock lock(mutex_);
        auto available = [&] {
            if (ordered_) return finished_.count(next_ordered) > 0;
            return !finished_.empty();
        };
        if (timeout) {
            if (!changed_.wait_for(lock, *timeout, available)) return std::nullopt;
        } else {
            changed_.wait(lock, available);
        }
        auto it = ordered_ ? finished_.find(next_ordered) : finished_.begin();
        Outcome outcome = std::move(it->second);
        finished_.erase(it);
        return outcome;
    }

private:
    void store(std::size_t chunk, Outcome outcome) {
        {
            std::lock_guard lock(mutex_);
            finished_.emplace(chunk, std::move(outcome));
        }
        changed_.notify_all();
    }
    bool ordered_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::map<std::size_t, Outcome> finished_;
};

// The input side of an imap, shared with the pool so that close() can send what is left of it
// (Python's task handler takes an imap's whole input; here it is taken lazily until the pool
// closes).
template <class R>
struct ImapFeed final : InputFeed {
    // Returns the next chunk's encoded inputs, or nullopt when the input is done.
    using ChunkSource = std::function<std::optional<std::vector<std::byte>>()>;

    ImapFeed(BasicPool& pool_, CallSite site_, std::shared_ptr<StreamSink<R>> sink_, ChunkSource source_,
             std::size_t window_)
        : pool(&pool_), site(site_), sink(std::move(sink_)), source(std::move(source_)), window(window_) {}

    BasicPool* pool;
    CallSite site;
    std::shared_ptr<StreamSink<R>> sink;
    ChunkSource source;
    std::size_t window;
    std::mutex mutex;  // the consumer's top-ups against close() from another thread
    std::size_t submitted = 0;
    bool input_done = false;
    std::exception_ptr input_error;  // what the input threw, raised after the results before it

    // Sends chunks until `limit` are in flight beyond the `taken` ones, or the input ends.
    void top_up(std::size_t taken, std::size_t limit) {
        std::lock_guard lock(mutex);
        std::vector<ChunkTask> tasks;
        while (!input_done && submitted - taken + tasks.size() < limit) {
            std::optional<std::vector<std::byte>> bytes;
            try {
                bytes = source();
            } catch (...) {
                // The chunk being gathered is dropped (as in Python); the ones before it run.
                input_error = std::current_exception();
                input_done = true;
                break;
            }
            if (!bytes) {
                input_done = true;
                break;
            }
            ChunkTask task;
            task.site = site;
            task.arguments = std::move(*bytes);
            task.sink = sink;
            task.chunk = submitted + tasks.size();
            tasks.push_back(std::move(task));
        }
        if (input_done) source = nullptr;  // what the input holds is let go with it
        const std::size_t count = tasks.size();
        if (count > 0) PoolAccess::submit(*pool, std::move(tasks));
        submitted += count;
    }
    void take_all() override { top_up(0, std::numeric_limits<std::size_t>::max()); }
};

}  // namespace mproc::detail
