// Shows: an Event: wait(), wait(timeout) that returns without error when the time runs out,
// is_set(), set().
#include <chrono>
#include <cstdio>
#include <thread>

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

const char* python_bool(bool value) { return value ? "True" : "False"; }

void wait_for_event(mproc::Event e) {
    print_line("wait_for_event: starting\n");
    e.wait();
    print_line("wait_for_event: e.is_set()-> %s\n", python_bool(e.is_set()));
}

void wait_for_event_timeout(mproc::Event e, int seconds) {
    print_line("wait_for_event_timeout: starting\n");
    e.wait(std::chrono::seconds(seconds));
    print_line("wait_for_event_timeout: e.is_set()-> %s\n", python_bool(e.is_set()));
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Event e;
    mproc::Process w1({.name = "block"}, wait_for_event, e);
    w1.start();

    mproc::Process w2({.name = "nonblock"}, wait_for_event_timeout, e, 2);
    w2.start();

    print_line("main: waiting before calling Event.set()\n");
    std::this_thread::sleep_for(3s);
    e.set();
    print_line("main: event is set\n");
}
