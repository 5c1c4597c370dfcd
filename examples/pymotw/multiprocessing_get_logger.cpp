// Shows: configuring the library's logger directly through get_logger().
#include <cstdio>

#include <mproc/logging.hpp>
#include <mproc/process.hpp>

void worker() {
    std::printf("Doing some work\n");
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::log_to_stderr();
    auto& logger = mproc::get_logger();
    logger.set_level(mproc::logging::INFO);
    mproc::Process p(worker);
    p.start();
    p.join();
}
