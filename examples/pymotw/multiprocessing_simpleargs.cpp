// Shows: passing an argument to the target function.
#include <cstdio>
#include <vector>

#include <mproc/process.hpp>

void worker(int num) {
    std::printf("Worker: %d\n", num);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 5; ++i) {
        mproc::Process p(worker, i);
        jobs.push_back(p);
        p.start();
    }
}
