// Figures for the synchronization primitives and shared values, against the primitives they
// stand on: a process-shared robust pthread mutex (what mproc::Lock is) and a bare futex
// ping-pong (what an Event round trip costs at the least).
#include <pthread.h>

#include <mutex>

#include "harness.hpp"
#include "ipc_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

namespace {

using bench::ipc::SharedObject;
using bench::ipc::two_processes_mproc;
using bench::ipc::two_processes_raw;

// A robust, process-shared pthread mutex: the raw primitive mproc::Lock is measured against.
struct RawMutex {
    pthread_mutex_t mutex;
    long counter = 0;
    RawMutex() {
        pthread_mutexattr_t attributes;
        ::pthread_mutexattr_init(&attributes);
        ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        ::pthread_mutex_init(&mutex, &attributes);
        ::pthread_mutexattr_destroy(&attributes);
    }
    ~RawMutex() { ::pthread_mutex_destroy(&mutex); }
    void lock() { bench::require(::pthread_mutex_lock(&mutex) == 0, "pthread_mutex_lock failed"); }
    void unlock() { ::pthread_mutex_unlock(&mutex); }
};

const bench::Register lock_uncontended{{
    .name = "lock.uncontended",
    .unit = bench::nanos_per("op"),
    .description = "lock() + unlock() of an mproc::Lock, one process; raw: a robust process-shared pthread mutex",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Lock lock;
             return bench::time_loop(iterations, [&] {
                 lock.lock();
                 lock.unlock();
             });
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             return bench::time_loop(iterations, [&] {
                 mutex->lock();
                 mutex->unlock();
             });
         }},
    },
}};

const bench::Register lock_contended{{
    .name = "lock.contended",
    .unit = bench::per_second("op"),
    .description = "2 processes, each: lock, ++counter, unlock (Lock + RawValue<long>); raw: a robust "
                   "process-shared pthread mutex and a long in shared memory",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Lock lock;
             mproc::RawValue<long> counter(0);
             const auto took = two_processes_mproc(iterations, [&] {
                 lock.lock();
                 ++counter.value();
                 lock.unlock();
             });
             bench::require(counter.value() == static_cast<long>(iterations), "lost increments");
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             const auto took = two_processes_raw(iterations, [&] {
                 mutex->lock();
                 ++mutex->counter;
                 mutex->unlock();
             });
             bench::require(mutex->counter == static_cast<long>(iterations), "lost increments");
             return took;
         }},
    },
}};

const bench::Register value_locked_increment{{
    .name = "value.locked_increment",
    .unit = bench::per_second("op"),
    .description = "2 processes, each: { std::scoped_lock g(v.get_lock()); v.value() += 1; } on a Value<long> "
                   "(its default RLock); raw: a robust process-shared pthread mutex and a long",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Value<long> v(0);
             const auto took = two_processes_mproc(iterations, [&] {
                 std::scoped_lock guard(v.get_lock());
                 v.value() += 1;
             });
             bench::require(v.load() == static_cast<long>(iterations), "lost increments");
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             const auto took = two_processes_raw(iterations, [&] {
                 std::scoped_lock guard(*mutex);
                 mutex->counter += 1;
             });
             bench::require(mutex->counter == static_cast<long>(iterations), "lost increments");
             return took;
         }},
    },
}};

const bench::Register event_pingpong{{
    .name = "event.pingpong",
    .unit = bench::micros_per("round_trip"),
    .description = "two processes, two Events: set(ping), wait(pong), clear(pong) against wait(ping), clear(ping), "
                   "set(pong); raw: the same with two bare futex words (FUTEX_WAIT / FUTEX_WAKE)",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Event ping, pong;
             // One round trip more than timed: the first waits for the child to be running (its
             // start is not part of the figure, as for the raw child, which runs at once).
             auto child = mproc::fork_context.Process([ping, pong, iterations]() mutable {
                 for (std::size_t i = 0; i <= iterations; ++i) {
                     ping.wait();
                     ping.clear();
                     pong.set();
                 }
             });
             child.start();
             const auto round_trip = [&] {
                 ping.set();
                 pong.wait();
                 pong.clear();
             };
             round_trip();
             const auto took = bench::time_loop(iterations, round_trip);
             child.join();
             bench::require(child.exitcode() == 0, "the child failed");
             return took;
         }},
        {"raw", bench::ipc::raw_futex_pingpong},
    },
}, bench::LoadedTwin{.impls = {"mproc", "raw"}}};

}  // namespace
