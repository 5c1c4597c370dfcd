// Shows: a Condition sequencing work across processes: the stage-2 processes wait until stage 1
// notifies them.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mproc/process.hpp>
#include <mproc/synchronize.hpp>

using namespace std::chrono_literals;

// The chapter ran this example unbuffered (python -u): every line goes out whole, at once, from
// every process, whatever the start method.
template <class... Args>
void print_line(const char* format, Args... args) {
    std::printf(format, args...);
    std::fflush(stdout);
}

void stage_1(mproc::Condition cond) {
    // perform first stage of work, then notify stage_2 to continue
    const std::string name = mproc::current_process().name();
    print_line("Starting %s\n", name.c_str());
    std::unique_lock guard(cond);
    print_line("%s done and ready for stage 2\n", name.c_str());
    cond.notify_all();
}

void stage_2(mproc::Condition cond) {
    // wait for the condition telling us stage_1 is done
    const std::string name = mproc::current_process().name();
    print_line("Starting %s\n", name.c_str());
    std::unique_lock guard(cond);
    cond.wait();
    print_line("%s running\n", name.c_str());
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Condition condition;
    mproc::Process s1({.name = "s1"}, stage_1, condition);
    std::vector<mproc::Process> stage_2_jobs;
    for (int i = 1; i <= 2; ++i)
        stage_2_jobs.emplace_back(mproc::ProcessOptions{.name = "stage_2[" + std::to_string(i) + "]"}, stage_2,
                                  condition);

    for (auto& c : stage_2_jobs) {
        c.start();
        std::this_thread::sleep_for(1s);
    }
    s1.start();

    s1.join();
    for (auto& c : stage_2_jobs) c.join();
}
