// Shows: a Queue carrying an object of a user-defined class to a child.
#include <cstdio>
#include <string>

#include <mproc/process.hpp>
#include <mproc/queue.hpp>

class MyFancyClass {
public:
    MyFancyClass() = default;
    explicit MyFancyClass(std::string name) : name_(std::move(name)) {}

    void do_something() const {
        std::printf("Doing something fancy in %s for %s!\n", mproc::current_process().name().c_str(), name_.c_str());
    }

    // What travels through the queue.
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name_);
    }

private:
    std::string name_;
};

void worker(mproc::Queue<MyFancyClass> q) {
    MyFancyClass obj = q.get();
    obj.do_something();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Queue<MyFancyClass> queue;

    mproc::Process p(worker, queue);
    p.start();

    queue.put(MyFancyClass("Fancy Dan"));

    // Wait for the worker to finish
    queue.close();
    queue.join_thread();
    p.join();
}
