// Shows: a dict kept by a manager's server process, filled by children; the parent sees their
// updates.
#include <iostream>
#include <vector>

#include <mproc/managers.hpp>
#include <mproc/process.hpp>

void worker(mproc::DictProxy<int, int> d, int key, int value) { d[key] = value; }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::SyncManager mgr = mproc::Manager();
    mproc::DictProxy<int, int> d = mgr.dict<int, int>();
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 10; ++i) jobs.emplace_back(worker, d, i, i * 2);
    for (auto& j : jobs) j.start();
    for (auto& j : jobs) j.join();
    std::cout << "Results: " << d << '\n';
}
