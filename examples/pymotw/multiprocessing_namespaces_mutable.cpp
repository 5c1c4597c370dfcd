// Shows: the Namespace gotcha: a mutable value read from a namespace is a copy, and changing the
// copy does not change the shared value (assign it again to share the change).
#include <cstdio>
#include <string>
#include <vector>

#include <mproc/managers.hpp>
#include <mproc/process.hpp>
#include <mproc/synchronize.hpp>

using StringList = std::vector<std::string>;

// Python's text form of a list of strings: ['a', 'b'].
std::string python_list(const StringList& items) {
    std::string text = "[";
    for (std::size_t i = 0; i < items.size(); ++i) text += (i > 0 ? ", '" : "'") + items[i] + "'";
    return text + "]";
}

void producer(mproc::Namespace ns, mproc::Event event) {
    // DOES NOT UPDATE GLOBAL VALUE!
    StringList my_list = ns.get<StringList>("my_list");
    my_list.push_back("This is the value");
    event.set();
}

void consumer(mproc::Namespace ns, mproc::Event event) {
    std::printf("Before event: %s\n", python_list(ns.get<StringList>("my_list")).c_str());
    event.wait();
    std::printf("After event : %s\n", python_list(ns.get<StringList>("my_list")).c_str());
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::SyncManager mgr = mproc::Manager();
    mproc::Namespace namespace_ = mgr.Namespace();
    namespace_.set("my_list", StringList{});

    mproc::Event event;
    mproc::Process p(producer, namespace_, event);
    mproc::Process c(consumer, namespace_, event);

    c.start();
    p.start();

    c.join();
    p.join();
}
