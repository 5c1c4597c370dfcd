// Shows: the exit code a parent sees for each way a child can end.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include <mproc/process.hpp>

using namespace std::chrono_literals;

void exit_error() {
    mproc::exit(1);
}

void exit_ok() {
}

int return_value() {
    return 1;
}

void raises() {
    throw std::runtime_error("There was an error!");
}

void terminated() {
    std::this_thread::sleep_for(3s);
}

// Starts a process named after its target. The targets are plain functions, so that they can
// travel to children under every start method.
template <class Target>
mproc::Process start_process_for(const char* name, Target target) {
    std::printf("Starting process for %s\n", name);
    mproc::Process j({.name = name}, target);
    j.start();
    return j;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::vector<mproc::Process> jobs;
    jobs.push_back(start_process_for("exit_error", exit_error));
    jobs.push_back(start_process_for("exit_ok", exit_ok));
    jobs.push_back(start_process_for("return_value", return_value));
    jobs.push_back(start_process_for("raises", raises));
    jobs.push_back(start_process_for("terminated", terminated));

    jobs.back().terminate();

    for (auto& j : jobs) {
        j.join();
        std::printf("%15s.exitcode = %d\n", j.name().c_str(), j.exitcode().value());
    }
}
