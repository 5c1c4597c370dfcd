// Shows: a Semaphore letting at most three workers run at once, the names of the active ones
// kept in a list owned by a manager, guarded by a Lock; the parent polls with join(timeout).
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <mproc/managers.hpp>
#include <mproc/process.hpp>
#include <mproc/synchronize.hpp>

using namespace std::chrono_literals;

// The chapter ran this example unbuffered (python -u): every line goes out whole, at once, from
// every process, whatever the start method.
void print_line(const std::string& line) {
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout);
}

class ActivePool {
public:
    ActivePool() : mgr_(std::make_shared<mproc::SyncManager>(mproc::Manager())), active_(mgr_->list<std::string>()) {}

    void makeActive(const std::string& name) {
        std::scoped_lock guard(lock_);
        active_.append(name);
    }
    void makeInactive(const std::string& name) {
        std::scoped_lock guard(lock_);
        active_.remove(name);
    }
    std::string str() {
        std::scoped_lock guard(lock_);
        return active_.str();
    }

    // What a child needs: the list's proxy and the lock. The manager stays with the parent, which
    // owns its server (Python cannot send the Manager to a spawned child either).
    template <class Archive>
    void serialize(Archive& ar) {
        ar(active_, lock_);
    }

private:
    std::shared_ptr<mproc::SyncManager> mgr_;
    mproc::ListProxy<std::string> active_;
    mproc::Lock lock_;
};

void worker(mproc::Semaphore s, ActivePool pool) {
    const std::string name = mproc::current_process().name();
    std::scoped_lock hold(s);
    pool.makeActive(name);
    print_line("Activating " + name + " now running " + pool.str());
    // Seeded here, in the child: each child sleeps its own random time.
    std::mt19937 random(std::random_device{}());
    std::this_thread::sleep_for(std::chrono::duration<double>(std::uniform_real_distribution<double>(0, 1)(random)));
    pool.makeInactive(name);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    ActivePool pool;
    mproc::Semaphore s(3);
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 10; ++i) jobs.emplace_back(mproc::ProcessOptions{.name = std::to_string(i)}, worker, s, pool);

    for (auto& j : jobs) j.start();

    for (;;) {
        int alive = 0;
        for (auto& j : jobs) {
            if (j.is_alive()) {
                ++alive;
                j.join(100ms);
                print_line("Now running " + pool.str());
            }
        }
        if (alive == 0) break;
    }
}
