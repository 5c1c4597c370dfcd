#pragma once
// The harness behind mproc_bench: a registry of figures, each measured for mproc and for the raw
// system primitive it stands on, in the same process and interleaved round by round, so that the
// noise of a shared machine hits every implementation alike. A figure's value is the median over
// rounds of the per-iteration cost of one batch.
//
// Why not Google Benchmark (installed): its results are per-benchmark statistics in its own
// console/JSON schema, with no notion of "the same figure, two implementations, interleaved"; the
// project's format is one JSON line per (figure, implementation), shared with the Python script
// and the report. Medians of timed batches are simple enough to write here.
//
// Adding a figure, in any .cpp file of the program:
//
//   static const bench::Register pipe_ping_pong{{
//       .name = "pipe.ping_pong.int",
//       .unit = bench::micros_per("round_trip"),
//       .description = "send/recv of an int and back, two processes",
//       .impls = {
//           {"mproc", [](std::size_t n) { /* set up */ auto t = bench::time_loop(n, op); /* tear down */ return t; }},
//           {"raw", bench::each([] { /* one iteration */ })},
//       },
//   }};
//
// A figure that should also be measured on a busy machine registers its loaded twin with it:
//
//   static const bench::Register pipe_ping_pong{figure, bench::LoadedTwin{.impls = {"mproc", "raw"}}};
//
// adds "pipe.ping_pong.int.loaded", the same batches run beside one busy-looping process per CPU.
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

using Seconds = std::chrono::duration<double>;

// Runs the measured operation `iterations` times and returns the time that took. Setup and
// teardown a batch needs (a child to poll, a pipe to write to) stay outside the returned time.
using BatchFn = std::function<Seconds(std::size_t iterations)>;

struct Impl {
    std::string name;  // "mproc", "raw"; the report knows these two (and "python")
    BatchFn run;
};

struct Unit {
    std::string name;  // as printed: "us/process", "msg/s", "MB/s"
    std::function<double(double seconds_per_iteration)> from_seconds_per_iteration;
};

Unit millis_per(std::string_view what);                  // "ms/<what>"
Unit micros_per(std::string_view what);                  // "us/<what>"
Unit nanos_per(std::string_view what);                   // "ns/<what>"
Unit per_second(std::string_view what);                  // "<what>/s": one <what> per iteration
Unit megabytes_per_second(double bytes_per_iteration);   // "MB/s", 10^6 bytes

struct Figure {
    std::string name;  // dotted, area first, so a prefix selects an area: "process.", "queue."
    Unit unit;
    std::string description;
    std::vector<Impl> impls;
    // Iterations per batch instead of the calibration, for a figure whose batch does not last
    // as long as it measures (the CPU time an idle pool uses): --iterations still overrides it.
    std::optional<std::size_t> fixed_iterations{};
    // Measured beside one busy-looping child process per CPU, from before the calibration until
    // after the last round: the machine a pool runs on is rarely idle, and waiting by spinning,
    // which pays off on idle CPUs, competes there with the work. Set by LoadedTwin.
    bool loaded = false;
    // In the spread check, rounds below this value count as this value: for a figure whose
    // rounds can be zero (the CPU time of something idle), where none in one round and a few
    // microseconds in the next is no bimodal behaviour.
    double spread_floor = 0;
};

// The loaded twin of a figure: "<name>.loaded", the same unit, the same batch functions.
struct LoadedTwin {
    std::vector<std::string> impls;    // the figure's implementations the twin measures too
    std::vector<Impl> own_impls = {};  // and implementations only the twin has (a reference that
                                       // makes sense under load only), added after those
    std::string description = {};      // instead of the figure's, when own_impls change its meaning
};

// Registers a figure during static initialization; one object per figure.
struct Register {
    explicit Register(Figure figure);
    // The figure and its loaded twin.
    Register(Figure figure, LoadedTwin twin);
};

// Keeps the compiler from dropping a computation whose result is otherwise unused.
template <class T>
inline void keep(const T& value) {
    asm volatile("" : : "r,m"(value) : "memory");
}

template <class Op>
Seconds time_loop(std::size_t iterations, Op&& op) {
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < iterations; ++i) op();
    return std::chrono::steady_clock::now() - start;
}

// A batch that is nothing but the repeated operation.
template <class Op>
BatchFn each(Op op) {
    return [op](std::size_t iterations) mutable { return time_loop(iterations, op); };
}

// A failed check inside a measured operation: a figure whose operation does not do what it
// claims is not reported at all.
void require(bool condition, std::string_view what);

// A figure that cannot be measured in this run (the MPI figures without mpirun): thrown by
// skip_unless, it leaves the figure out with the reason on stderr, and the exit status alone.
class Skipped : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};
void skip_unless(bool condition, std::string_view why);

// Parses the command line, runs the selected figures and prints them; returns the exit status.
int run_cli(int argc, char** argv);

}  // namespace bench
