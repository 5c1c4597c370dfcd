#pragma once
// Encoding a value can give something away: a SharedBuffer's ownership goes with the message that
// names it (shared_buffer.hpp). If the message never leaves (put() raises Full, send() raises
// EPIPE, a later member of the value fails to encode), the sender must keep what it gave. So such
// a step is taken in two phases: encoding takes it provisionally and enlists it here; whoever
// sends the message commits once the message has left, and an encoding or a send that raises rolls
// every enlisted step back.
//
// A HandoverTransaction covers one message on one thread. Encoder::write opens one, so a value
// encoded on its own (dumps, encode_into) commits when its encoding completes, and rolls back when
// it raises. Queue::put and Connection::send open an outer one around encoding and sending: the
// inner ones then join it, and only the outer commit counts. A step enlisted with no transaction
// open is committed at once.
#include <cstddef>
#include <vector>

namespace mproc::detail {

class HandoverTransaction {
public:
    // Ends a provisional step: sent = true once the message has left, false to undo it.
    using Finish = void (*)(const void* subject, bool sent) noexcept;

    // Every encoded value opens one, so opening and committing one with nothing enlisted touch
    // only plain thread-local counters; the list of steps is reached only when there are steps.
    HandoverTransaction() noexcept : mark_(enlisted()) { ++depth(); }
    ~HandoverTransaction() {
        --depth();
        if (!committed_) finish_from(mark_, false);
    }
    HandoverTransaction(const HandoverTransaction&) = delete;
    HandoverTransaction& operator=(const HandoverTransaction&) = delete;

    // The message has left (or, in a transaction inside another, its part is complete).
    void commit() noexcept {
        committed_ = true;
        if (depth() == 1) finish_from(mark_, true);
    }

    // Records a provisional step; may throw std::bad_alloc, before recording it.
    static void enlist(const void* subject, Finish finish) {
        if (depth() == 0) {
            finish(subject, true);
            return;
        }
        pending().push_back(Step{subject, finish});
        ++enlisted();
    }

private:
    struct Step {
        const void* subject;
        Finish finish;
    };

    // Last enlisted first, so that an undo sees the state its step left.
    static void finish_from(std::size_t mark, bool sent) noexcept {
        if (enlisted() <= mark) return;
        std::vector<Step>& steps = pending();
        while (steps.size() > mark) {
            const Step step = steps.back();
            steps.pop_back();
            --enlisted();
            step.finish(step.subject, sent);
        }
    }
    static std::vector<Step>& pending() noexcept {
        thread_local std::vector<Step> steps;
        return steps;
    }
    // pending().size(), kept where reading it costs no thread-local initialization check.
    static std::size_t& enlisted() noexcept {
        thread_local std::size_t count = 0;
        return count;
    }
    static int& depth() noexcept {
        thread_local int value = 0;
        return value;
    }

    std::size_t mark_;
    bool committed_ = false;
};

}  // namespace mproc::detail
