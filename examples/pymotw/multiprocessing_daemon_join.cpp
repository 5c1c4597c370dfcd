// Shows: join() waits for a daemon child too.
#include <chrono>
#include <cstdio>
#include <thread>

#include <mproc/process.hpp>

using namespace std::chrono_literals;

void daemon_main() {
    const auto name = mproc::current_process().name();
    std::printf("Starting: %s\n", name.c_str());
    std::this_thread::sleep_for(2s);
    std::printf("Exiting : %s\n", name.c_str());
}

void non_daemon_main() {
    const auto name = mproc::current_process().name();
    std::printf("Starting: %s\n", name.c_str());
    std::printf("Exiting : %s\n", name.c_str());
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Process d({.name = "daemon", .daemon = true}, daemon_main);
    mproc::Process n({.name = "non-daemon", .daemon = false}, non_daemon_main);

    d.start();
    std::this_thread::sleep_for(1s);
    n.start();

    d.join();
    n.join();
}
