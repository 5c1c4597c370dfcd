#pragma once
// A Pool living in a manager's server process (Python's SyncManager.Pool and its PoolProxy).
//
//   int square(int x) { return x * x; }
//   mproc::SyncManager manager = mproc::Manager();
//   mproc::PoolProxy pool = manager.Pool(4);                // an mproc::Pool of 4 workers
//   std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});
//   mproc::AsyncResultProxy<int> r = pool.apply_async(square, 7);
//   int v = r.get(std::chrono::seconds(1));
//
// The pool is an mproc::Pool (pool.hpp) in the server: its workers are children of the server
// process, started by the pool's own start method. Any process holding the proxy (a child under
// any start method, a process that connected to the manager) submits work to it. A task is what
// an mproc::Pool takes: a function or a lambda without captures, with Encodable arguments and an
// Encodable result (checked at compile time); it travels to the server as a code reference, as a
// registered type's methods do, with its arguments encoded.
//
// What the calls do, as Python's PoolProxy:
//  - apply, map, starmap wait for the result; apply_async, map_async, starmap_async return an
//    AsyncResultProxy (get(timeout), wait, ready, successful), itself an object of the server
//    that can be handed to another process.
//  - map and starmap split the input into chunks of `chunksize` items (unset: Python's rule,
//    ceil(len / (4 × processes)), asking the server for its number of processes).
//  - imap and imap_unordered return an IMapIteratorProxy read chunk by chunk (chunksize 1 by
//    default: element by element), next(timeout) as Python's. The whole input is read and sent
//    when imap is called (Python pickles the iterable into the call the same way).
//  - Errors as Python's: a call on a pool that was closed or terminated, ValueError("Pool not
//    running"); join() before close() or terminate(), ValueError("Pool is still running");
//    a chunksize of 0, ValueError("Chunksize must be 1+, not 0"); processes < 1,
//    ValueError("Number of processes must be at least 1"). get() on a result not ready within its
//    timeout, TimeoutError.
//  - A task that throws an mproc exception (ValueError, KeyError, ...) fails its result with that
//    exception's type and message, as a registered method's exceptions travel; any other type
//    arrives as a RemoteError carrying its type name and message (mproc::WorkerLostError
//    included). After terminate(), unfinished results fail with ProcessError("pool terminated").
//
// Lifetime: the pool lives while any process holds a proxy of it; when the last proxy goes, the
// server terminates it (as leaving Python's `with pool:` does). A result or iterator proxy keeps
// its outcome in the server for as long as it lives, whatever happens to the pool.
//
// Not offered: callbacks (callback=, error_callback=): Python runs them in the server, where no
// C++ function of the client can be called by name; a worker initializer.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/manager_pool.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"
#include "mproc/managers.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"

namespace mproc {

// What a managed Pool is made with (PoolOptions less the initializer and the callbacks).
struct ManagedPoolOptions {
    // Unset: process_cpu_count() of the server's machine.
    std::optional<int> processes{};
    std::optional<int> maxtasksperchild{};
    // The start method of the workers (children of the server). Unset: the default (context.hpp).
    std::optional<StartMethod> context{};
    std::optional<std::chrono::milliseconds> task_timeout{};
};

// The outcome of apply_async, map_async or starmap_async on a managed Pool (Python's AsyncResult
// proxy): an object of the server that holds the result until the last proxy of it goes.
template <class T>
class AsyncResultProxy : public BaseProxy {
public:
    AsyncResultProxy() = default;
    explicit AsyncResultProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    // The result, or the task's error; TimeoutError when the timeout passes first.
    T get() const { return detail::join_parts<T>(call_typed<detail::Blobs>("get", std::int64_t{-1})); }
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) const {
        return detail::join_parts<T>(call_typed<detail::Blobs>("get", detail::timeout_ns(timeout)));
    }
    void wait() const { call_typed<bool>("wait", std::int64_t{-1}); }
    // True when the result became ready within `timeout`.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        return call_typed<bool>("wait", detail::timeout_ns(timeout));
    }
    bool ready() const { return call_typed<bool>("ready"); }
    // ValueError("the result is not ready") before it is (Python: ValueError "<...> not ready").
    bool successful() const { return call_typed<bool>("successful"); }

protected:
    const char* proxy_name() const override { return "AutoProxy[AsyncResult]"; }
};

// The results of imap or imap_unordered on a managed Pool (Python's IMapIterator proxy), read
// one chunk per call to the server. A copy of the proxy reads the same results, without the
// chunk this one holds.
template <class R>
class IMapIteratorProxy : public BaseProxy {
public:
    IMapIteratorProxy() = default;
    explicit IMapIteratorProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    // The next result; nullopt at the end. Rethrows the error of the chunk it comes from.
    std::optional<R> next() { return next_impl(std::int64_t{-1}); }
    // TimeoutError when nothing arrives within `timeout`.
    template <class Rep, class Period>
    std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
        return next_impl(detail::timeout_ns(timeout));
    }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIteratorProxy* owner) : owner_(owner) { current_ = owner_->next(); }
        const R& operator*() const { return *current_; }
        const R* operator->() const { return &*current_; }
        iterator& operator++() {
            current_ = owner_->next();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.current_; }

    private:
        IMapIteratorProxy* owner_ = nullptr;
        std::optional<R> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

protected:
    const char* proxy_name() const override { return "AutoProxy[Iterator]"; }

private:
    std::optional<R> next_impl(std::int64_t timeout_ns) {
        while (position_ == buffer_.size()) {
            auto part = call_typed<std::optional<detail::Blob>>("next", timeout_ns);
            if (!part) return std::nullopt;
            buffer_ = loads<std::vector<R>>(*part);
            position_ = 0;
        }
        return std::move(buffer_[position_++]);
    }
    std::vector<R> buffer_;
    std::size_t position_ = 0;
};

// A managed Pool (Python's PoolProxy). See the top of this file.
class PoolProxy : public BaseProxy {
public:
    PoolProxy() = default;
    explicit PoolProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    // ---- apply ----
    template <class F, class... Args>
    auto apply_async(F function, Args&&... args) const {
        using R = detail::call_result_t<F, std::decay_t<Args>...>;
        detail::check_task<F, std::decay_t<Args>...>();
        const auto site = detail::call_site<F>(&detail::run_apply<F, std::decay_t<Args>...>, function);
        return submit<AsyncResultProxy<R>>(
            site, {dumps(std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...))}, detail::PoolJobKind::apply);
    }
    template <class F, class... Args>
    auto apply(F function, Args&&... args) const {
        return apply_async(function, std::forward<Args>(args)...).get();
    }

    // ---- map: chunksize unset is Python's rule ----
    template <class F, std::ranges::input_range Range>
    auto map_async(F function, Range&& items, std::optional<std::size_t> chunksize = std::nullopt) const {
        using T = std::ranges::range_value_t<Range>;
        detail::check_task<F, T>();
        const auto site = detail::call_site<F>(&detail::run_map_chunk<F, T>, function);
        return submit_items<AsyncResultProxy<std::vector<detail::call_result_t<F, T>>>>(
            site, detail::gather_items<T>(std::forward<Range>(items)), chunksize, detail::PoolJobKind::map);
    }
    template <class F, std::ranges::input_range Range>
    auto map(F function, Range&& items, std::optional<std::size_t> chunksize = std::nullopt) const {
        return map_async(function, std::forward<Range>(items), chunksize).get();
    }

    // ---- starmap: every item is a tuple (or pair) of arguments ----
    template <class F, std::ranges::input_range Range>
    auto starmap_async(F function, Range&& items, std::optional<std::size_t> chunksize = std::nullopt) const {
        using Tuple = std::ranges::range_value_t<Range>;
        using R = typename detail::StarResult<F, Tuple>::type;
        detail::check_star_task<F, Tuple>();
        const auto site = detail::call_site<F>(&detail::run_starmap_chunk<F, Tuple>, function);
        return submit_items<AsyncResultProxy<std::vector<R>>>(
            site, detail::gather_items<Tuple>(std::forward<Range>(items)), chunksize, detail::PoolJobKind::map);
    }
    template <class F, std::ranges::input_range Range>
    auto starmap(F function, Range&& items, std::optional<std::size_t> chunksize = std::nullopt) const {
        return starmap_async(function, std::forward<Range>(items), chunksize).get();
    }

    // ---- imap: the input is read whole now; results come chunk by chunk ----
    template <class F, std::ranges::input_range Range>
    auto imap(F function, Range&& items, std::size_t chunksize = 1) const {
        return imap_like<F>(function, std::forward<Range>(items), chunksize, detail::PoolJobKind::imap);
    }
    template <class F, std::ranges::input_range Range>
    auto imap_unordered(F function, Range&& items, std::size_t chunksize = 1) const {
        return imap_like<F>(function, std::forward<Range>(items), chunksize, detail::PoolJobKind::imap_unordered);
    }

    // No new tasks; the queued ones still run, then the workers exit.
    void close() const { call_typed<void>("close"); }
    // Stops the workers now; unfinished results fail with ProcessError("pool terminated").
    void terminate() const { call_typed<void>("terminate"); }
    // Waits for the workers to exit; ValueError("Pool is still running") before close/terminate.
    void join() const { call_typed<void>("join"); }
    // The number of workers (Python's private _processes).
    int processes() const { return static_cast<int>(call_typed<std::int64_t>("processes")); }

protected:
    const char* proxy_name() const override { return "PoolProxy"; }

private:
    // Python's rule for an unset chunksize: ceil(items / (4 × processes)).
    std::size_t chunksize_for(std::optional<std::size_t> chunksize, std::size_t items) const {
        if (chunksize) return *chunksize;
        const std::size_t per = static_cast<std::size_t>(processes()) * 4;
        return items / per + (items % per != 0 ? 1 : 0);
    }

    template <class Result, class T>
    Result submit_items(const detail::CallSite& site, const std::vector<T>& all, std::optional<std::size_t> chunksize,
                        detail::PoolJobKind kind) const {
        if (chunksize && *chunksize == 0) throw ValueError("Chunksize must be 1+, not 0");
        const std::size_t size = all.empty() ? 1 : chunksize_for(chunksize, all.size());
        return submit<Result>(site, detail::encode_chunks(all, size), kind);
    }

    template <class F, class Range>
    auto imap_like(F function, Range&& items, std::size_t chunksize, detail::PoolJobKind kind) const {
        using T = std::ranges::range_value_t<Range>;
        detail::check_task<F, T>();
        const auto site = detail::call_site<F>(&detail::run_map_chunk<F, T>, function);
        return submit_items<IMapIteratorProxy<detail::call_result_t<F, T>>>(
            site, detail::gather_items<T>(std::forward<Range>(items)), chunksize, kind);
    }

    // Sends the chunks; the server answers with the id of the result object it made, whose
    // reference it holds for the proxy made here.
    template <class Result>
    Result submit(const detail::CallSite& site, const detail::Blobs& chunks, detail::PoolJobKind kind) const {
        const auto id = call_typed<std::uint64_t>("submit", detail::wire_call_site(site), chunks, kind);
        // The result object is reached the way this pool is: this proxy's token, with its id.
        auto token = loads<detail::ProxyToken>(dumps(static_cast<const BaseProxy&>(*this)));
        token.id = id;
        token.type_id = kind == detail::PoolJobKind::apply || kind == detail::PoolJobKind::map ? "AsyncResult" : "Iterator";
        return adopt_taken<Result>(detail::TakenValue{dumps(token), {id}});
    }
};

inline PoolProxy SyncManager::Pool(const ManagedPoolOptions& options) {
    return PoolProxy(create_raw("Pool", {dumps(options.processes), dumps(options.maxtasksperchild),
                                         dumps(options.context),
                                         dumps(options.task_timeout ? std::optional<std::int64_t>(options.task_timeout->count())
                                                                    : std::nullopt)}));
}

inline PoolProxy SyncManager::Pool(std::optional<int> processes) {
    ManagedPoolOptions options;
    options.processes = processes;
    return Pool(options);
}

}  // namespace mproc
