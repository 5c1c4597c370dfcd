// Shows: terminate(), is_alive() around it, and why join() must follow to update the status.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include <mproc/process.hpp>

using namespace std::chrono_literals;

void slow_worker() {
    std::printf("Starting worker\n");
    std::this_thread::sleep_for(100ms);
    std::printf("Finished worker\n");
}

// print(label, p, p.is_alive()): Python calls is_alive() before it formats the repr.
void show(const char* label, const mproc::Process& p) {
    const bool alive = p.is_alive();
    std::cout << label << ' ' << p << ' ' << (alive ? "True" : "False") << '\n';
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Process p(slow_worker);
    show("BEFORE:", p);

    p.start();
    show("DURING:", p);

    p.terminate();
    show("TERMINATED:", p);

    p.join();
    show("JOINED:", p);
}
