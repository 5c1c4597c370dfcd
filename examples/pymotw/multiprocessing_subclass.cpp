// Shows: subclassing Process and overriding run() instead of passing a target.
#include <cstdio>
#include <vector>

#include <mproc/process.hpp>

class Worker : public mproc::Process {
public:
    void run() override {
        std::printf("In %s\n", name().c_str());
    }
};
// Lets Worker objects travel to children under the spawn and forkserver start methods
// (MPROC_START_METHOD); fork needs no registration.
MPROC_REGISTER_PROCESS(Worker);

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::vector<Worker> jobs;
    for (int i = 0; i < 5; ++i) {
        Worker p;
        jobs.push_back(p);
        p.start();
    }
    for (auto& j : jobs) {
        j.join();
    }
}
