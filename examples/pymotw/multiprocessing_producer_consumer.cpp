// Shows: a JoinableQueue of tasks consumed by several worker processes, a result Queue, poison
// pills to stop the workers, and a Process subclass with its own constructor.
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <mproc/process.hpp>
#include <mproc/queue.hpp>

class Task {
public:
    Task() = default;
    Task(int a, int b) : a_(a), b_(b) {}

    std::string operator()() const {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // pretend to take time to do the work
        return std::to_string(a_) + " * " + std::to_string(b_) + " = " + std::to_string(a_ * b_);
    }
    std::string str() const { return std::to_string(a_) + " * " + std::to_string(b_); }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(a_, b_);
    }

private:
    int a_ = 0;
    int b_ = 0;
};

// An empty optional is the poison pill.
using TaskQueue = mproc::JoinableQueue<std::optional<Task>>;

class Consumer : public mproc::Process {
public:
    Consumer() = default;
    Consumer(TaskQueue task_queue, mproc::Queue<std::string> result_queue)
        : task_queue_(std::move(task_queue)), result_queue_(std::move(result_queue)) {}

    void run() override {
        const std::string proc_name = name();
        for (;;) {
            std::optional<Task> next_task = task_queue_->get();
            if (!next_task) {
                // Poison pill means shutdown
                std::printf("%s: Exiting\n", proc_name.c_str());
                task_queue_->task_done();
                break;
            }
            std::printf("%s: %s\n", proc_name.c_str(), next_task->str().c_str());
            std::string answer = (*next_task)();
            task_queue_->task_done();
            result_queue_->put(answer);
        }
    }

    // What travels to the child under spawn and forkserver.
    template <class Archive>
    void serialize(Archive& ar) {
        ar(task_queue_, result_queue_);
    }

private:
    std::optional<TaskQueue> task_queue_;
    std::optional<mproc::Queue<std::string>> result_queue_;
};
MPROC_REGISTER_PROCESS(Consumer);

int main(int argc, char** argv) {
    // The chapter ran this example unbuffered: every process, spawned children included (they
    // become children inside init), writes each line as it is printed.
    std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
    mproc::init(argc, argv);

    // Establish communication queues
    TaskQueue tasks;
    mproc::Queue<std::string> results;

    // Start consumers
    const int num_consumers = mproc::cpu_count() * 2;
    std::printf("Creating %d consumers\n", num_consumers);
    std::vector<Consumer> consumers;
    for (int i = 0; i < num_consumers; ++i) consumers.emplace_back(tasks, results);
    for (auto& w : consumers) w.start();

    // Enqueue jobs
    const int num_jobs = 10;
    for (int i = 0; i < num_jobs; ++i) tasks.put(Task(i, i));

    // Add a poison pill for each consumer
    for (int i = 0; i < num_consumers; ++i) tasks.put(std::nullopt);

    // Wait for all of the tasks to finish
    tasks.join();

    // Start printing results
    for (int i = 0; i < num_jobs; ++i) {
        std::string result = results.get();
        std::printf("Result: %s\n", result.c_str());
    }
}
