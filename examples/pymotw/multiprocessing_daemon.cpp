// Shows: a daemon child is not waited for; it is terminated when the main program ends.
#include <chrono>
#include <cstdio>
#include <thread>

#include <mproc/process.hpp>

using namespace std::chrono_literals;

void daemon_main() {
    auto& p = mproc::current_process();
    std::printf("Starting: %s %d\n", p.name().c_str(), p.pid().value());
    std::fflush(stdout);
    std::this_thread::sleep_for(2s);
    std::printf("Exiting : %s %d\n", p.name().c_str(), p.pid().value());
    std::fflush(stdout);
}

void non_daemon_main() {
    auto& p = mproc::current_process();
    std::printf("Starting: %s %d\n", p.name().c_str(), p.pid().value());
    std::fflush(stdout);
    std::printf("Exiting : %s %d\n", p.name().c_str(), p.pid().value());
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Process d({.name = "daemon"}, daemon_main);
    d.set_daemon(true);

    mproc::Process n({.name = "non-daemon"}, non_daemon_main);
    n.set_daemon(false);

    d.start();
    std::this_thread::sleep_for(1s);
    n.start();
}
