// The managed Pool in the server: an mproc::Pool whose tasks come from clients as code references
// (the worker entry and function pool.hpp's templates made in the client) with encoded chunks.
// The server never needs the tasks' types: it hands the chunks to the pool and keeps the encoded
// results, per chunk, in a result object of its own (an "AsyncResult" for apply and map, an
// "Iterator" for imap), which the client's proxy reads and decodes.
#include "managers/pool_referent.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "base/deadline.hpp"
#include "managers/protocol.hpp"
#include "mproc/managed_pool.hpp"
#include "mproc/pool.hpp"

namespace mproc::detail {
namespace {

// A task's exception as the client should get it. A worker reports an exception as its type name
// and message (TaskError); an mproc exception the wire knows by kind is made again as itself, so
// that it arrives as a registered method's does. Any other stays a TaskError, a RemoteError
// carrying its type name.
std::exception_ptr with_its_kind(std::exception_ptr error) {
    constexpr std::string_view prefix = "mproc::";
    try {
        std::rethrow_exception(error);
    } catch (const TaskError& e) {
        if (!e.type_name().starts_with(prefix)) return error;
        try {
            raise_remote(e.type_name().substr(prefix.size()), e.message());
        } catch (const RemoteError&) {
            return error;  // not a kind the wire knows
        } catch (...) {
            return std::current_exception();
        }
    } catch (...) {
    }
    return error;
}

// The outcome of one submit: the encoded result of each chunk, or the first error (apply, map);
// for an imap, each chunk's outcome until the client takes it.
class Job final : public ResultSink {
public:
    Job(PoolJobKind kind, std::size_t chunks) : kind_(kind), parts_(chunks), remaining_(chunks) {}

    void deliver(std::size_t chunk, std::span<const std::byte> results) override {
        settle(chunk, Blob(results.begin(), results.end()), nullptr);
    }
    void fail(std::size_t chunk, std::exception_ptr error) override { settle(chunk, {}, with_its_kind(std::move(error))); }

    bool streamed() const { return kind_ == PoolJobKind::imap || kind_ == PoolJobKind::imap_unordered; }

    bool wait(std::int64_t timeout_ns) {
        std::unique_lock lock(mutex_);
        return wait_for(lock, timeout_ns, [this] { return ready_locked(); });
    }
    bool ready() {
        std::lock_guard lock(mutex_);
        return ready_locked();
    }
    bool successful() {
        std::lock_guard lock(mutex_);
        if (!ready_locked()) throw ServerError{"ValueError", "the result is not ready"};
        return !error_;
    }
    Blobs get(std::int64_t timeout_ns) {
        std::unique_lock lock(mutex_);
        if (!wait_for(lock, timeout_ns, [this] { return ready_locked(); }))
            throw ServerError{"TimeoutError", "the result is not ready yet"};
        if (error_) std::rethrow_exception(error_);
        return parts_;
    }
    // The next chunk of an imap (in submission order, or the first finished); none at the end.
    std::optional<Blob> next(std::int64_t timeout_ns) {
        std::unique_lock lock(mutex_);
        if (taken_ == parts_.size()) return std::nullopt;
        const bool ordered = kind_ == PoolJobKind::imap;
        auto available = [&] { return ordered ? finished_.contains(taken_) : !finished_.empty(); };
        if (!wait_for(lock, timeout_ns, available)) throw ServerError{"TimeoutError", "no result arrived in time"};
        auto it = ordered ? finished_.find(taken_) : finished_.begin();
        Outcome outcome = std::move(it->second);
        finished_.erase(it);
        ++taken_;
        if (outcome.error) std::rethrow_exception(outcome.error);
        return std::move(outcome.bytes);
    }

private:
    struct Outcome {
        Blob bytes;
        std::exception_ptr error;
    };

    template <class Ready>
    bool wait_for(std::unique_lock<std::mutex>& lock, std::int64_t timeout_ns, Ready ready) {
        if (timeout_ns < 0) {
            changed_.wait(lock, ready);
            return true;
        }
        return changed_.wait_until(lock, Deadline::after(std::chrono::nanoseconds(timeout_ns)).steady_time(), ready);
    }
    // A map is ready when every chunk is in, or at its first error (Python's MapResult).
    bool ready_locked() const { return remaining_ == 0 || error_ != nullptr; }

    void settle(std::size_t chunk, Blob bytes, std::exception_ptr error) {
        {
            std::lock_guard lock(mutex_);
            if (chunk >= parts_.size()) return;
            if (streamed()) {
                finished_.emplace(chunk, Outcome{std::move(bytes), error});
            } else if (error) {
                if (!error_) error_ = std::move(error);
            } else {
                parts_[chunk] = std::move(bytes);
            }
            --remaining_;
        }
        changed_.notify_all();
    }

    const PoolJobKind kind_;
    std::mutex mutex_;
    std::condition_variable changed_;
    Blobs parts_;  // apply, map: the results by chunk; imap: only its size counts
    std::size_t remaining_;
    std::exception_ptr error_;
    std::map<std::size_t, Outcome> finished_;  // imap: chunks done and not yet taken
    std::size_t taken_ = 0;
};

// A result object: the client's AsyncResultProxy or IMapIteratorProxy calls it.
class JobReferent final : public Referent {
public:
    explicit JobReferent(std::shared_ptr<Job> job) : job_(std::move(job)) {}
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        if (job_->streamed()) {
            if (m == "next") return dumps(job_->next(timeout_arg(args)));
        } else {
            if (m == "get") return dumps(job_->get(timeout_arg(args)));
            if (m == "wait") return dumps(job_->wait(timeout_arg(args)));
            if (m == "ready") return dumps(job_->ready());
            if (m == "successful") return dumps(job_->successful());
        }
        throw ServerError{"AttributeError", fmt::format("method '{}' of '{}' object is not exposed", m,
                                                        job_->streamed() ? "Iterator" : "AsyncResult")};
    }

private:
    static std::int64_t timeout_arg(const Blobs& args) {
        check_argument_count("the method", 1, args.size());
        return loads<std::int64_t>(args[0]);
    }
    std::shared_ptr<Job> job_;
};

class PoolReferent final : public Referent {
public:
    explicit PoolReferent(PoolOptions options) : pool_(std::move(options)) {}

    Blob call(std::string_view m, const Blobs& args, const Caller& caller) override {
        // mproc::Pool's misuse errors are UsageErrors; Python's PoolProxy raises ValueError.
        try {
            if (m == "submit") return submit(args, caller);
            if (m == "close") {
                pool_.close();
                return {};
            }
            if (m == "terminate") {
                pool_.terminate();
                return {};
            }
            if (m == "join") {
                std::lock_guard lock(joining_);  // one thread joins the pool's dispatcher at a time
                pool_.join();
                return {};
            }
            if (m == "processes") return dumps(std::int64_t{pool_.processes()});
        } catch (const UsageError& e) {
            throw ServerError{"ValueError", e.what()};
        }
        throw ServerError{"AttributeError", fmt::format("method '{}' of 'Pool' object is not exposed", m)};
    }

private:
    Blob submit(const Blobs& args, const Caller& caller) {
        check_argument_count("submit", 3, args.size());
        const auto wire = loads<WireCallSite>(args[0]);
        auto chunks = loads<Blobs>(args[1]);
        const auto kind = loads<PoolJobKind>(args[2]);
        if (caller.server == nullptr) throw ServerError{"UsageError", "this call cannot make objects"};
        check_same_program(wire.program, "a managed Pool's task");
        CallSite site;
        site.entry = resolve_code_ref(wire.entry);
        if (wire.function) site.function = resolve_code_ref(*wire.function);

        auto job = std::make_shared<Job>(kind, chunks.size());
        std::vector<ChunkTask> tasks;
        tasks.reserve(chunks.size());
        for (std::size_t c = 0; c < chunks.size(); ++c) {
            ChunkTask task;
            task.site = site;
            task.arguments = std::move(chunks[c]);
            task.sink = job;
            task.chunk = c;
            tasks.push_back(std::move(task));
        }
        PoolAccess::submit(pool_, std::move(tasks));  // "Pool not running" when closed, also with no chunk

        // The result object, with one reference: the caller's proxy takes it over.
        std::string type_id = job->streamed() ? "Iterator" : "AsyncResult";
        ServerState& server = *caller.server;
        std::lock_guard lock(server.mutex);
        const std::uint64_t id = server.next_id++;
        server.objects.emplace(id, ServerState::Entry{std::make_shared<JobReferent>(std::move(job)), 1u, std::move(type_id)});
        return dumps(id);
    }

    mproc::Pool pool_;
    std::mutex joining_;
};

std::optional<std::chrono::milliseconds> milliseconds_of(std::optional<std::int64_t> ms) {
    if (!ms) return std::nullopt;
    return std::chrono::milliseconds(*ms);
}

}  // namespace

std::shared_ptr<Referent> make_pool_referent(const Blobs& args) {
    check_argument_count("Pool", 4, args.size());
    PoolOptions options;
    options.processes = loads<std::optional<int>>(args[0]);
    options.maxtasksperchild = loads<std::optional<int>>(args[1]);
    options.context = loads<std::optional<StartMethod>>(args[2]);
    options.task_timeout = milliseconds_of(loads<std::optional<std::int64_t>>(args[3]));
    try {
        return std::make_shared<PoolReferent>(std::move(options));
    } catch (const UsageError& e) {
        throw ServerError{"ValueError", e.what()};  // Python: ValueError for processes < 1
    }
}

}  // namespace mproc::detail
