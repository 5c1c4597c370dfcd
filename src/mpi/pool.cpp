// mproc::mpi::Pool: a BasicPool whose tasks rank 0's dispatcher sends to the serving ranks, or,
// with one rank only, a local Pool's.
#include "mpi/dispatcher.hpp"
#include "mproc/mpi.hpp"

namespace mproc::mpi {

Pool::Pool(PoolOptions options) {
    if (options.workers_per_rank && *options.workers_per_rank < 1)
        throw UsageError("Number of processes must be at least 1");
    if (detail::runtime() == nullptr) throw UsageError("mproc::mpi::Pool: call mproc::mpi::init(argc, argv) first");
    if (detail::runtime()->rank != 0) throw UsageError("mproc::mpi::Pool is made on rank 0");
    detail::PoolSpec spec;
    spec.workers = options.workers_per_rank;
    spec.context = options.context;
    if (options.initializer) {
        Encoder out(spec.initializer);
        options.initializer.target()->encode_portable(out);
    }
    spec.maxtasksperchild = options.maxtasksperchild;
    if (options.task_timeout) spec.task_timeout_ms = options.task_timeout->count();
    spec.run_in_rank = options.run_in_rank;
    dispatcher_ = detail::dispatcher();
    if (dispatcher_ == nullptr) {
        // One rank only: the tasks run in a local pool (init said so).
        local_ = std::make_unique<mproc::Pool>(detail::local_pool_options(spec));
        return;
    }
    dispatcher_->open_pool(spec, options.chunks_in_flight_per_worker);
}

Pool::~Pool() {
    if (local_) return;  // it terminates itself
    try {
        dispatcher_->terminate_pool();
        dispatcher_->join_pool();
    } catch (...) {
        // Nothing may escape a destructor; the pool is released either way.
    }
    dispatcher_->release_pool();
}

int Pool::processes() const noexcept { return local_ ? local_->processes() : dispatcher_->shape().processes; }

int Pool::ranks() const noexcept { return local_ ? 0 : dispatcher_->shape().ranks; }

void Pool::close() {
    send_open_inputs();
    if (local_) return local_->close();
    dispatcher_->close_pool();
}

void Pool::terminate() {
    if (local_) return local_->terminate();
    dispatcher_->terminate_pool();
}

void Pool::join() {
    if (local_) return local_->join();
    dispatcher_->join_pool();
}

void Pool::submit(std::vector<::mproc::detail::ChunkTask> tasks) {
    if (local_) return ::mproc::detail::PoolAccess::submit(*local_, std::move(tasks));
    dispatcher_->submit(std::move(tasks));
}

bool Pool::running() const noexcept {
    if (local_) return ::mproc::detail::PoolAccess::running(*local_);
    return dispatcher_->accepting();
}

}  // namespace mproc::mpi
