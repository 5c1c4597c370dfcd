// Shows: the exit code a parent sees for each way a child can end.
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
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

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const std::vector<std::pair<std::string, std::function<void()>>> targets = {
        {"exit_error", exit_error}, {"exit_ok", exit_ok}, {"return_value", return_value},
        {"raises", raises},         {"terminated", terminated},
    };

    std::vector<mproc::Process> jobs;
    for (const auto& [name, target] : targets) {
        std::printf("Starting process for %s\n", name.c_str());
        mproc::Process j({.name = name}, target);
        jobs.push_back(j);
        j.start();
    }

    jobs.back().terminate();

    for (auto& j : jobs) {
        j.join();
        std::printf("%15s.exitcode = %d\n", j.name().c_str(), j.exitcode().value());
    }
}
