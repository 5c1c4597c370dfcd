// mproc::mpi::Pool: a BasicPool whose tasks rank 0's dispatcher sends to the serving ranks, or,
// with one rank only, a local Pool's.
#include "mpi/dispatcher.hpp"
#include "mproc/mpi.hpp"

namespace mproc::mpi {

class Pool::Core {
public:
    explicit Core(detail::Dispatcher& d) : dispatcher(d) {}
    detail::Dispatcher& dispatcher;
    detail::Dispatcher::Shape shape;
};

Pool::Pool(PoolOptions options) {
    if (options.workers_per_rank && *options.workers_per_rank < 1)
        throw UsageError("Number of processes must be at least 1");
    if (detail::runtime() == nullptr) throw UsageError("mproc::mpi::Pool: call mproc::mpi::init(argc, argv) first");
    if (detail::runtime()->rank != 0) throw UsageError("mproc::mpi::Pool is made on rank 0");
    detail::Dispatcher* dispatcher = detail::dispatcher();
    if (dispatcher == nullptr) {
        // One rank only: the tasks run in a local pool (init said so).
        mproc::PoolOptions local;
        local.processes = options.workers_per_rank;
        local.context = options.context;
        local.initializer = std::move(options.initializer);
        local.maxtasksperchild = options.maxtasksperchild;
        local.task_timeout = options.task_timeout;
        local_ = std::make_unique<mproc::Pool>(std::move(local));
        return;
    }
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
    core_ = std::make_shared<Core>(*dispatcher);
    core_->shape = dispatcher->open_pool(spec, options.chunks_in_flight_per_worker);
}

Pool::~Pool() {
    if (!core_) return;  // local_ terminates itself
    try {
        core_->dispatcher.terminate_pool();
        core_->dispatcher.join_pool();
    } catch (...) {
        // Nothing may escape a destructor; the pool is released either way.
    }
    core_->dispatcher.release_pool();
}

int Pool::processes() const noexcept {
    if (local_) return local_->processes();
    return core_->dispatcher.shape().processes;
}

int Pool::ranks() const noexcept {
    if (local_) return 0;
    return core_->dispatcher.shape().ranks;
}

void Pool::close() {
    send_open_inputs();
    local_running_ = false;
    if (local_) return local_->close();
    core_->dispatcher.close_pool();
}

void Pool::terminate() {
    local_running_ = false;
    if (local_) return local_->terminate();
    core_->dispatcher.terminate_pool();
}

void Pool::join() {
    if (local_) return local_->join();
    core_->dispatcher.join_pool();
}

void Pool::submit(std::vector<::mproc::detail::ChunkTask> tasks) {
    if (local_) return ::mproc::detail::PoolAccess::submit(*local_, std::move(tasks));
    core_->dispatcher.submit(std::move(tasks));
}

bool Pool::running() const noexcept {
    if (local_) return local_running_;
    return core_->dispatcher.accepting();
}

}  // namespace mproc::mpi
