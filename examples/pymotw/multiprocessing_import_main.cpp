// Shows: the target function lives in another module (translation unit) than main.
#include <vector>

#include <mproc/process.hpp>

#include "multiprocessing_import_worker.hpp"

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 5; ++i) {
        mproc::Process p(multiprocessing_import_worker::worker);
        jobs.push_back(p);
        p.start();
    }
}
