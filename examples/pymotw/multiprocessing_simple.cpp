// Shows: creating a process with a target function and starting it; mproc joins it at exit.
#include <cstdio>
#include <vector>

#include <mproc/process.hpp>

void worker() {
    std::printf("Worker\n");
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 5; ++i) {
        mproc::Process p(worker);
        jobs.push_back(p);
        p.start();
    }
}
