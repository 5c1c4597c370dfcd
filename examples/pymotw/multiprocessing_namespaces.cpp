// Shows: a manager Namespace: an attribute set by one process is seen by another; reading an
// attribute that does not exist is an error.
#include <cstdio>
#include <exception>
#include <string>

#include <mproc/managers.hpp>
#include <mproc/process.hpp>
#include <mproc/synchronize.hpp>

void producer(mproc::Namespace ns, mproc::Event event) {
    ns.set("value", std::string("This is the value"));
    event.set();
}

void consumer(mproc::Namespace ns, mproc::Event event) {
    try {
        std::printf("Before event: %s\n", ns.get<std::string>("value").c_str());
    } catch (const std::exception& err) {
        std::printf("Before event, error: %s\n", err.what());
    }
    event.wait();
    std::printf("After event: %s\n", ns.get<std::string>("value").c_str());
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::SyncManager mgr = mproc::Manager();
    mproc::Namespace namespace_ = mgr.Namespace();
    mproc::Event event;
    mproc::Process p(producer, namespace_, event);
    mproc::Process c(consumer, namespace_, event);

    c.start();
    p.start();

    c.join();
    p.join();
}
