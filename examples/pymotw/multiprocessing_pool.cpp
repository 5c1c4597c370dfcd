// Shows: a Pool of 2 × cpu_count workers, each running an initializer when it starts, and map()
// spreading a list over them; close() and join() before reading the workers' output.
#include <cstdio>
#include <ranges>
#include <string>
#include <vector>

#include <mproc/pool.hpp>
#include <mproc/process.hpp>

int do_calculation(int data) { return data * 2; }

void start_process() { std::printf("Starting %s\n", mproc::current_process().name().c_str()); }

// Python's repr of a list of ints: [0, 2, 4].
std::string repr(const std::vector<int>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + std::to_string(values[i]);
    return text + "]";
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const std::vector<int> inputs{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::printf("Input   : %s\n", repr(inputs).c_str());

    // Python's built-in map() is lazy and never consumed here: so is this view.
    auto builtin_outputs = std::views::transform(inputs, do_calculation);
    std::printf("Built-in: <map object at %p>\n", static_cast<void*>(&builtin_outputs));

    const int pool_size = mproc::cpu_count() * 2;
    mproc::Pool pool({.processes = pool_size, .initializer = start_process});
    const std::vector<int> pool_outputs = pool.map(do_calculation, inputs);
    pool.close();  // no more tasks
    pool.join();   // wait for the worker processes to exit

    std::printf("Pool    : %s\n", repr(pool_outputs).c_str());
}
