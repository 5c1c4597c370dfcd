// Shows: a Lock guarding a shared output stream, held for a scope (Python's `with lock:`) and
// taken and given back by hand.
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include <mproc/process.hpp>
#include <mproc/synchronize.hpp>

// Python passes sys.stdout itself. The stream travels here as its file descriptor, which a
// child receives under every start method (a FILE* or a std::ostream& only means something in a
// forked child). Writes are buffered, as Python's are, and come out when each child ends.
std::FILE* stream_of(int descriptor) { return descriptor == STDERR_FILENO ? stderr : stdout; }

void worker_with(mproc::Lock lock, int stream) {
    std::scoped_lock guard(lock);
    std::fputs("Lock acquired via with\n", stream_of(stream));
}

void worker_no_with(mproc::Lock lock, int stream) {
    lock.acquire();
    try {
        std::fputs("Lock acquired directly\n", stream_of(stream));
    } catch (...) {
        lock.release();
        throw;
    }
    lock.release();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Lock lock;
    mproc::Process w(worker_with, lock, STDOUT_FILENO);
    mproc::Process nw(worker_no_with, lock, STDOUT_FILENO);

    w.start();
    nw.start();

    w.join();
    nw.join();
}
