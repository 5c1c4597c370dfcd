#pragma once
// A pool task as the dispatcher sees it (pool floor, machinery of pool.hpp): what a worker runs
// for one chunk (the entry templates and the call site that names them), where the chunk's outcome
// goes (ResultSink), the chunk itself (ChunkTask), and the one way in to a pool's implementation
// for the code beside the pool that makes tasks (PoolAccess: the imap feeds, the managed pool's
// server side).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/target.hpp"

namespace mproc {

class BasicPool;

namespace detail {

// What calling F with Args gives; std::monostate (mproc::None) for a void function.
template <class F, class... Args>
using call_result_t = std::conditional_t<std::is_void_v<std::invoke_result_t<F&, Args&...>>, std::monostate,
                                         std::decay_t<std::invoke_result_t<F&, Args&...>>>;

template <class F, class... Args>
call_result_t<F, Args...> invoke_for_result(F& fn, Args&... args) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, Args&...>>) {
        std::invoke(fn, args...);
        return std::monostate{};
    } else {
        return std::invoke(fn, args...);
    }
}

// The result of calling F with the elements of a tuple or pair (starmap).
template <class F, class Tuple>
struct StarResult;
template <class F, class... Args>
struct StarResult<F, std::tuple<Args...>> {
    using type = call_result_t<F, Args...>;
};
template <class F, class A, class B>
struct StarResult<F, std::pair<A, B>> {
    using type = call_result_t<F, A, B>;
};

template <class F, class... Args>
consteval void check_task() {
    static_assert(is_function_pointer<F> || is_stateless_callable<F>,
                  "a Pool task must be a function or a lambda without captures: it runs in a worker process "
                  "that existed before the task");
    static_assert((Encodable<Args> && ...), "a Pool task's arguments must be Encodable (codec.hpp)");
    static_assert(Encodable<call_result_t<F, Args...>>, "a Pool task's result must be Encodable (codec.hpp)");
}

// The worker's side of one kind of call: decode the chunk's inputs, call, encode the results.
// `function` is the target when it is a function pointer, else unused.
using ChunkEntry = void (*)(const void* function, Decoder& in, Encoder& out);

template <class F>
F function_from(const void* function) {
    if constexpr (is_function_pointer<F>) {
        return reinterpret_cast<F>(const_cast<void*>(function));
    } else {
        return F{};
    }
}

template <class F, class T>
void run_map_chunk(const void* function, Decoder& in, Encoder& out) {
    F fn = function_from<F>(function);
    auto items = in.read<std::vector<T>>();
    std::vector<call_result_t<F, T>> results;
    results.reserve(items.size());
    for (auto& item : items) results.push_back(invoke_for_result(fn, item));
    out.write(results);
}

template <class F, class Tuple>
void run_starmap_chunk(const void* function, Decoder& in, Encoder& out) {
    F fn = function_from<F>(function);
    auto items = in.read<std::vector<Tuple>>();
    using R = decltype(std::apply([&fn](auto&... a) { return invoke_for_result(fn, a...); }, items.front()));
    std::vector<R> results;
    results.reserve(items.size());
    for (auto& item : items) results.push_back(std::apply([&fn](auto&... a) { return invoke_for_result(fn, a...); }, item));
    out.write(results);
}

template <class F, class... Args>
void run_apply(const void* function, Decoder& in, Encoder& out) {
    F fn = function_from<F>(function);
    auto args = in.read<std::tuple<Args...>>();
    out.write(std::apply([&fn](auto&... a) { return invoke_for_result(fn, a...); }, args));
}

// Which code a task runs: the entry (a function template instance) and, for a function-pointer
// target, the function. Both travel to workers as code references, once per worker.
struct CallSite {
    const void* entry = nullptr;
    const void* function = nullptr;
    friend bool operator==(const CallSite&, const CallSite&) = default;
};

template <class F>
CallSite call_site(ChunkEntry entry, const F& fn) {
    CallSite site{reinterpret_cast<const void*>(entry), nullptr};
    if constexpr (is_function_pointer<F>) site.function = reinterpret_cast<const void*>(fn);
    return site;
}

// Where a chunk's outcome goes: a result object of the caller's type. Called on the dispatcher
// thread; `results` is the encoded output of the chunk's entry.
class ResultSink {
public:
    virtual ~ResultSink() = default;
    virtual void deliver(std::size_t chunk, std::span<const std::byte> results) = 0;
    virtual void fail(std::size_t chunk, std::exception_ptr error) = 0;
    // Whether delivering runs the caller's callbacks (callback, error_callback, on_progress):
    // those run on the pool's dispatcher thread only, never on a thread that waits for a result.
    virtual bool runs_callbacks() const noexcept { return false; }
};

// A thread that waits for a result may collect the workers' answers itself instead of sleeping
// until the pool's dispatcher hands them over: the answer then wakes the waiter directly, one
// wake-up instead of two. A pool that can do so implements this; results keep a weak reference,
// so a pool that is gone is not asked.
class WaitHelper {
public:
    virtual ~WaitHelper() = default;
    // Collects answers on the calling thread until `ready` is true, `until` passes, or the pool
    // needs its dispatcher; returns at once when it cannot help now.
    virtual void collect_until(const std::atomic<bool>& ready, std::chrono::steady_clock::time_point until) = 0;
};

// A chunk of work as the dispatcher sees it.
struct ChunkTask {
    CallSite site;
    std::vector<std::byte> arguments;
    std::shared_ptr<ResultSink> sink;
    std::size_t chunk = 0;  // the chunk's index within its sink
};

// The input of an imap still being read: close() takes what is left of it, so that the tasks of
// every imap started before close() run, as Python's task handler takes an imap's input whole.
class InputFeed {
public:
    virtual ~InputFeed() = default;
    virtual void take_all() = 0;
};

// The dispatcher: the thread that owns the workers (src/pool/pool.cpp).
class PoolCore;

// The implementation's door, which BasicPool keeps protected: hands chunks to it ("Pool not
// running" UsageError once the pool is closed), and registers an imap's input, whose rest close()
// sends. Defined in pool.hpp, after Pool.
struct PoolAccess {
    static inline void submit(BasicPool& pool, std::vector<ChunkTask> tasks);
    static inline void watch_input(BasicPool& pool, const std::shared_ptr<InputFeed>& feed);
    // Whether the pool still takes chunks (a pool can end itself: Pool does when its workers keep
    // dying before they run anything).
    static inline bool running(const BasicPool& pool) noexcept;
};

}  // namespace detail
}  // namespace mproc
