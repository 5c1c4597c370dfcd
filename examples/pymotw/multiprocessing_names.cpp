// Shows: explicit and default process names, and current_process().name().
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <mproc/process.hpp>

using namespace std::chrono_literals;

void worker() {
    const std::string name = mproc::current_process().name();
    std::printf("%s Starting\n", name.c_str());
    std::this_thread::sleep_for(2s);
    std::printf("%s Exiting\n", name.c_str());
}

void my_service() {
    const std::string name = mproc::current_process().name();
    std::printf("%s Starting\n", name.c_str());
    std::this_thread::sleep_for(3s);
    std::printf("%s Exiting\n", name.c_str());
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Process service({.name = "my_service"}, my_service);
    mproc::Process worker_1({.name = "worker 1"}, worker);
    mproc::Process worker_2(worker);  // use the default name

    worker_1.start();
    worker_2.start();
    service.start();
}
