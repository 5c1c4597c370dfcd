#pragma once
// Contexts and start methods (Python's multiprocessing.context): how children come to exist.
//
//   auto& ctx = mproc::get_context("spawn");
//   mproc::Process p = ctx.Process(worker, 42);    // started by re-executing this program
//
// The three start methods:
//  - fork: the child is a copy of the parent. Any callable can be a target, capturing lambdas
//    included, and arguments need not be Encodable. Starting is fastest. Forking a process that
//    runs other threads copies only the calling thread: a lock another thread held (in a library
//    mproc does not know) stays locked forever in the child. mproc's own locks are reset after a
//    fork.
//  - spawn: the program is executed anew (/proc/self/exe, the same binary) and becomes the child
//    in mproc::init(), which must be the first call in main. The target must be a function or a
//    captureless lambda, the arguments Encodable (they travel through the codec).
//  - forkserver: a single-threaded server process, started on first use by executing the
//    program anew, forks the children on request. Safe from a parent with many threads, cheaper
//    than spawn; the same rules as spawn for what travels. Its control channel is a socketpair
//    inherited by the server alone, so no other process can reach it.
//
// The default is fork, a deliberate choice: it is the only method under which any C++ callable
// runs in the child, which is what "manage processes like threads" asks, and it is the fastest.
// Python 3.14 moved Linux to forkserver because fork from a multi-threaded program can deadlock;
// a C++ program that runs threads of its own when it starts children should choose forkserver,
// with set_start_method("forkserver") or the environment variable MPROC_START_METHOD, which sets
// the default for every program without a code change (fork, spawn or forkserver).
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/process.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

namespace mproc {

std::string_view to_string(StartMethod method) noexcept;
// UsageError("cannot find context for 'x'") for an unknown name.
StartMethod parse_start_method(std::string_view name);

// A start method plus the factories of the objects that use it (Python's context objects).
class Context {
public:
    constexpr explicit Context(StartMethod method) noexcept : method_(method) {}

    StartMethod start_method() const noexcept { return method_; }
    std::string_view name() const noexcept { return to_string(method_); }

    // Python's ctx.Process(target, args...): a Process that uses this context's start method.
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    mproc::Process Process(F&& target, Args&&... args) const {
        return mproc::Process(ProcessOptions{.start_method = method_}, std::forward<F>(target),
                              std::forward<Args>(args)...);
    }
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    mproc::Process Process(ProcessOptions options, F&& target, Args&&... args) const {
        options.start_method = method_;
        return mproc::Process(std::move(options), std::forward<F>(target), std::forward<Args>(args)...);
    }

    // Python's ctx.Lock(), ctx.Event(), ctx.Value(...): the objects of synchronize.hpp and
    // sharedctypes.hpp. They are the same under every start method (their memory reaches
    // children of every kind), so these only mirror Python's API.
    mproc::Lock Lock() const { return mproc::Lock(); }
    mproc::RLock RLock() const { return mproc::RLock(); }
    mproc::Condition Condition() const { return mproc::Condition(); }
    mproc::Condition Condition(const mproc::Lock& lock) const { return mproc::Condition(lock); }
    mproc::Condition Condition(const mproc::RLock& lock) const { return mproc::Condition(lock); }
    mproc::Semaphore Semaphore(int value = 1) const { return mproc::Semaphore(value); }
    mproc::BoundedSemaphore BoundedSemaphore(int value = 1) const { return mproc::BoundedSemaphore(value); }
    mproc::Event Event() const { return mproc::Event(); }
    mproc::Barrier Barrier(int parties, BarrierOptions options = {}) const {
        return mproc::Barrier(parties, std::move(options));
    }
    template <class T>
    mproc::Value<T> Value(const T& initial = T{}) const {
        return mproc::Value<T>(initial);
    }
    template <class T>
    mproc::RawValue<T> RawValue(const T& initial = T{}) const {
        return mproc::RawValue<T>(initial);
    }
    template <class T>
    mproc::Array<T> Array(std::size_t size) const {
        return mproc::Array<T>(size);
    }
    template <class T>
    mproc::RawArray<T> RawArray(std::size_t size) const {
        return mproc::RawArray<T>(size);
    }

private:
    StartMethod method_;
};

// A context whose start method is known at compile time: a target that cannot travel under it
// is a compile-time error.
template <StartMethod Method>
class StaticContext : public Context {
public:
    constexpr StaticContext() noexcept : Context(Method) {}

    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    mproc::Process Process(F&& target, Args&&... args) const {
        check_portable<F, Args...>();
        return Context::Process(std::forward<F>(target), std::forward<Args>(args)...);
    }
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    mproc::Process Process(ProcessOptions options, F&& target, Args&&... args) const {
        check_portable<F, Args...>();
        return Context::Process(std::move(options), std::forward<F>(target), std::forward<Args>(args)...);
    }

private:
    template <class F, class... Args>
    static constexpr void check_portable() {
        if constexpr (Method != StartMethod::fork) {
            using Fn = std::decay_t<F>;
            static_assert(detail::is_function_pointer<Fn> || detail::is_stateless_callable<Fn>,
                          "under spawn and forkserver the target must be a function or a captureless lambda: "
                          "a lambda with captures or a callable with state cannot travel to the child");
            static_assert((Encodable<std::decay_t<Args>> && ...),
                          "under spawn and forkserver every argument must be Encodable (codec.hpp)");
        }
    }
};

inline constexpr StaticContext<StartMethod::fork> fork_context{};
inline constexpr StaticContext<StartMethod::spawn> spawn_context{};
inline constexpr StaticContext<StartMethod::forkserver> forkserver_context{};

// The context of a start method by name ("fork", "spawn", "forkserver"), or the default
// context when `method` is empty (which fixes the default, as Python's does).
const Context& get_context(std::string_view method = {});

// Sets the default start method, once: a second call is a UsageError ("context has already been
// set") unless `force`; `force` with nullopt forgets the choice.
void set_start_method(std::optional<std::string_view> method, bool force = false);

// The default start method's name. Fixes the default as a side effect unless allow_none, in
// which case it is nullopt while nothing has fixed it.
std::optional<std::string> get_start_method(bool allow_none = false);

// Every start method available here, the default first.
std::vector<std::string> get_all_start_methods();

}  // namespace mproc
