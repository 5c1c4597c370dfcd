#pragma once
// The operations queue.hpp's templates call on a queue's shared ring (src/queue/queue.cpp): create
// or import the ring, put encoded bytes, get a message into a sink that decodes it in place, and
// the rest of Python's queue methods.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_block.hpp"
#include "mproc/detail/type_tag.hpp"

namespace mproc {

struct QueueOptions;

namespace detail {

class QueueCore;

enum class QueueKind : std::uint32_t { queue = 1, simple = 2, joinable = 3 };

std::shared_ptr<QueueCore> queue_create(QueueKind kind, long maxsize, const QueueOptions& options);
std::shared_ptr<QueueCore> queue_import(SharedBlock block, QueueKind kind);
const SharedBlock& queue_block(const QueueCore& core);

// `bytes` is the encoded message; the core copies it (or keeps the vector, which it may take).
void queue_put(QueueCore& core, std::vector<std::byte>& bytes, const TypeTag& tag, std::int64_t timeout);

// Calls `decode` with the bytes of the next message, checked to be of `tag`'s type, while they are
// still in the shared buffer where possible. Throws Empty when nothing arrives in time.
class QueueSink {
public:
    virtual void operator()(std::span<const std::byte> bytes) = 0;

protected:
    ~QueueSink() = default;
};
void queue_get(QueueCore& core, const TypeTag& tag, QueueSink& decode, std::int64_t timeout);

long queue_qsize(const QueueCore& core);
long queue_maxsize(const QueueCore& core);
bool queue_full(const QueueCore& core);
void queue_close(QueueCore& core);
void queue_join_thread(QueueCore& core);
void queue_cancel_join_thread(QueueCore& core);
void queue_task_done(QueueCore& core);
void queue_join(QueueCore& core);
std::string queue_repr(const QueueCore& core);
[[noreturn]] void queue_throw_moved_from();

// The encoding buffer of this thread: one allocation reused by every put.
std::vector<std::byte>& queue_encode_buffer();

template <class T>
class TypedSink final : public QueueSink {
public:
    void operator()(std::span<const std::byte> bytes) override { value = loads<T>(bytes); }
    std::optional<T> value;
};

}  // namespace detail

}  // namespace mproc
