// mproc_bench: mproc's figures next to the raw system primitives they stand on. The harness is in
// harness.cpp; the figures register themselves from one file per area (process_figures.cpp, ...).
#include <cstdlib>
#include <cstring>

#include "harness.hpp"
#include "mproc/process.hpp"

int main(int argc, char** argv) {
    // The raw side of process.start_join.spawn executes this program and wants it to end at
    // once, as a spawned mproc child of a no-op target does, minus mproc's work.
    if (argc > 1 && std::strcmp(argv[1], "--exit-at-once") == 0) return 0;
    mproc::init(argc, argv);
    return bench::run_cli(argc, argv);
}
