// mproc_bench: mproc's figures next to the raw system primitives they stand on. The harness is in
// harness.cpp; the figures register themselves from one file per area (process_figures.cpp, ...).
#include "harness.hpp"
#include "mproc/process.hpp"

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    return bench::run_cli(argc, argv);
}
