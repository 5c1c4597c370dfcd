// Shows: log_to_stderr(DEBUG) and the library's own life-cycle log messages.
#include <cstdio>

#include <mproc/logging.hpp>
#include <mproc/process.hpp>

void worker() {
    std::printf("Doing some work\n");
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::log_to_stderr(mproc::logging::DEBUG);
    mproc::Process p(worker);
    p.start();
    p.join();
}
