#pragma once
// What rank 0 and the serving ranks say to each other (mpi floor). Every message is one MPI
// message of bytes on mproc's own duplicate of MPI_COMM_WORLD, encoded with the codec; its first
// byte is its kind. Rank 0 sends on kToServer, the serving ranks answer on kToRoot.
//
//   rank 0 -> rank k            rank k -> rank 0
//   start   (a pool's spec)     ready   (its workers, pid) or start_failed (why)
//   tasks   (site definitions   results (per task: value, or error kind + type + message)
//            + encoded chunks)
//   end     (close, join)       ended
//   terminate                   ended
//   ping    (rank 0 is alive)   heartbeat
//   stop    (the program ends)  protocol_error (a message it could not read)
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/code_ref.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"

namespace mproc::mpi::detail {

inline constexpr int kToServer = 7101;
inline constexpr int kToRoot = 7102;

enum class ServerMessage : std::uint8_t { start = 1, tasks, end, terminate, ping, stop };
enum class RootMessage : std::uint8_t { ready = 1, start_failed, results, ended, heartbeat, protocol_error };

// How a task ended on the serving rank.
enum class Outcome : std::uint8_t { value = 0, task_error, worker_lost, timeout, other_error };

struct PoolSpec {
    std::uint64_t pool_id = 0;
    std::optional<int> workers;
    std::optional<StartMethod> context;
    std::vector<std::byte> initializer;  // a portable call (detail/target.hpp), empty for none
    std::optional<int> maxtasksperchild;
    std::optional<std::int64_t> task_timeout_ms;
    bool run_in_rank = false;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(pool_id, workers, context, initializer, maxtasksperchild, task_timeout_ms, run_in_rank);
    }
};

// The local pool a spec describes: a serving rank's, or rank 0's own when it is the only rank
// (server.cpp; the initializer runs from its portable encoding).
::mproc::PoolOptions local_pool_options(const PoolSpec& spec);

// A call site as it travels: the entry and the function as code references (code_ref.hpp).
struct SiteDefinition {
    std::uint32_t id = 0;
    ::mproc::detail::CodeRef entry;
    std::optional<::mproc::detail::CodeRef> function;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, entry, function);
    }
};

struct TaskMessage {
    std::uint64_t id = 0;
    std::uint32_t site = 0;
    std::vector<std::byte> arguments;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, site, arguments);
    }
};

struct TaskBatch {
    std::uint64_t pool_id = 0;
    std::vector<SiteDefinition> sites;
    std::vector<TaskMessage> tasks;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(pool_id, sites, tasks);
    }
};

struct TaskResult {
    std::uint64_t id = 0;
    Outcome outcome = Outcome::value;
    std::vector<std::byte> value;  // Outcome::value: the entry's encoded output
    std::string type_name;         // otherwise: the error
    std::string message;
    int pid = 0;       // worker_lost: the worker
    int exitcode = 0;

    // A value carries only its bytes: most results are values, and small ones.
    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, outcome);
        if (outcome == Outcome::value) {
            ar(value);
        } else {
            ar(type_name, message, pid, exitcode);
        }
    }
};

struct Ready {
    std::uint64_t pool_id = 0;
    int workers = 0;
    int pid = 0;
    std::string host;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(pool_id, workers, pid, host);
    }
};

// A message: its kind, then its body.
template <class Kind, class Body>
std::vector<std::byte> message(Kind kind, const Body& body) {
    std::vector<std::byte> bytes;
    Encoder out(bytes);
    out.write(static_cast<std::uint8_t>(kind));
    out.write(body);
    return bytes;
}
template <class Kind>
std::vector<std::byte> message(Kind kind) {
    return {static_cast<std::byte>(kind)};
}

}  // namespace mproc::mpi::detail
