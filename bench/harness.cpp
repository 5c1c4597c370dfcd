#include "harness.hpp"

#include <fmt/core.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace bench {
namespace {

// Function-local so that registrations from other files' static initializers find it built.
std::vector<Figure>& registry() {
    static std::vector<Figure> figures;
    return figures;
}

struct Options {
    bool json = false;
    bool list = false;
    int rounds = 7;
    Seconds min_time{0.2};
    std::optional<std::size_t> iterations;
    bool spread_check = true;
    std::vector<std::string> prefixes;
};

struct Result {
    std::string impl;
    std::size_t iterations = 0;
    std::vector<double> per_round;  // in the figure's unit
};

constexpr std::string_view usage_text =
    R"(usage: mproc_bench [--json] [--rounds N] [--min-time SECONDS] [--iterations N]
                   [--no-spread-check] [--list] [NAME-PREFIX...]

Measures each selected figure for mproc and for the raw system primitive it stands on, in this
process, alternating the implementations round by round. A figure's value is the median over the
rounds of the cost per iteration of one batch. With no NAME-PREFIX every figure runs; a prefix
such as "process." selects the figures whose names start with it. Figures named "*.loaded" run
beside one busy-looping process per CPU.

A figure implementation whose slowest round differs from its fastest by more than 5x is bimodal,
a behaviour to explain rather than noise: after all results, one line per such implementation
names it with its min, median and max on stderr, and the exit status is 1. The check applies with
3 rounds or more and batches of 50 ms or more (calibrated, or the figure's own size); shorter
batches are swayed by a single time slice of another process.

  --json              one JSON line per figure and implementation:
                      {"name", "impl", "value", "unit", "min", "max", "rounds", "iterations"}
                      (value is the median; min and max are over the rounds)
                      instead of a table
  --rounds N          rounds per figure (default 7)
  --min-time SECONDS  least duration of one batch; sets each implementation's iteration count,
                      found by a calibration that also warms up (default 0.2)
  --iterations N      fixed iterations per batch instead of --min-time (no calibration, and
                      no spread check)
  --no-spread-check   report bimodal figures as any other, with exit status 0
  --list              print the figures' names, units and descriptions, and exit
  --help              this text
)";

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "mproc_bench: %s\n\n%.*s", message.c_str(), int(usage_text.size()), usage_text.data());
    std::exit(2);
}

template <class Number>
Number parse_number(std::string_view option, std::string_view text) {
    Number value{};
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || !(value > Number{0}))
        usage_error(fmt::format("{} wants a positive number, not '{}'", option, text));
    return value;
}

Options parse_options(int argc, char** argv) {
    Options options;
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        // "--rounds=3" and "--rounds 3" alike.
        std::optional<std::string_view> inline_value;
        if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                inline_value = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
        }
        const auto value = [&]() -> std::string_view {
            if (inline_value) return *inline_value;
            if (i + 1 >= args.size()) usage_error(fmt::format("{} wants a value", arg));
            return args[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::fwrite(usage_text.data(), 1, usage_text.size(), stdout);
            std::exit(0);
        } else if (arg == "--json") {
            options.json = true;
        } else if (arg == "--list") {
            options.list = true;
        } else if (arg == "--rounds") {
            options.rounds = parse_number<int>(arg, value());
        } else if (arg == "--min-time") {
            options.min_time = Seconds(parse_number<double>(arg, value()));
        } else if (arg == "--iterations") {
            options.iterations = parse_number<std::size_t>(arg, value());
        } else if (arg == "--no-spread-check") {
            options.spread_check = false;
        } else if (arg.starts_with("-")) {
            usage_error(fmt::format("unknown option '{}'", arg));
        } else {
            options.prefixes.emplace_back(arg);
        }
    }
    return options;
}

// A prefix that selects nothing is reported but is not fatal, so that one command line can name
// areas that only some of the tools (this one, the Python script) measure yet.
std::vector<const Figure*> select_figures(const std::vector<std::string>& prefixes) {
    std::vector<const Figure*> selected;
    for (const Figure& figure : registry()) {
        const bool wanted = prefixes.empty() || std::any_of(prefixes.begin(), prefixes.end(), [&](const std::string& p) {
                                return figure.name.starts_with(p);
                            });
        if (wanted) selected.push_back(&figure);
    }
    for (const std::string& prefix : prefixes) {
        const bool matched = std::any_of(selected.begin(), selected.end(),
                                         [&](const Figure* f) { return f->name.starts_with(prefix); });
        if (!matched) std::fprintf(stderr, "mproc_bench: no figure matches '%s'\n", prefix.c_str());
    }
    return selected;
}

// Grows the batch until one takes at least min_time. The batches run on the way are the
// implementation's warm-up (page faults, lazy binding, the first child's copy-on-write). The
// count is sized from the fastest batch seen, so that one batch slowed down by the machine's
// other work does not leave the figure with too few iterations.
std::size_t calibrate(const BatchFn& run, Seconds min_time) {
    constexpr std::size_t max_iterations = std::size_t{1} << 32;
    std::size_t iterations = 1;
    double fastest_per_iteration = std::numeric_limits<double>::infinity();
    for (;;) {
        const Seconds took = run(iterations);
        fastest_per_iteration = std::min(fastest_per_iteration, took.count() / double(iterations));
        if (took >= min_time || iterations >= max_iterations) {
            const double wanted = std::ceil(min_time.count() / std::max(fastest_per_iteration, 1e-12));
            return std::clamp(static_cast<std::size_t>(std::min(wanted, double(max_iterations))), iterations,
                              max_iterations);
        }
        // Aim 20% past min_time so that the next batch usually is the last, but grow at most
        // tenfold, since a first iteration can be slower than the rest by far.
        const double growth = took.count() > 0 ? std::clamp(1.2 * min_time / took, 1.5, 10.0) : 10.0;
        iterations = std::max(iterations + 1, static_cast<std::size_t>(double(iterations) * growth));
    }
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", int(c));
        } else {
            out += c;
        }
    }
    return out + '"';
}

// One busy-looping child process per CPU this process may run on, for the loaded figures. Not
// pinned: the scheduler places them as it would any other work. Killed and reaped when the object
// goes, however the figure ends; PR_SET_PDEATHSIG ends them with this process if it is killed.
class CpuLoad {
public:
    CpuLoad() {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        const int count = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
        const pid_t parent = ::getpid();
        for (int i = 0; i < count; ++i) {
            const pid_t pid = ::fork();
            if (pid == 0) burn(parent);
            if (pid < 0) {
                stop();
                throw std::runtime_error("fork of a CPU-burning process failed");
            }
            burners_.push_back(pid);
        }
    }
    ~CpuLoad() { stop(); }
    CpuLoad(const CpuLoad&) = delete;
    CpuLoad& operator=(const CpuLoad&) = delete;

private:
    [[noreturn]] static void burn(pid_t parent) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(0);  // the parent died before prctl
        for (std::uint64_t x = 0;; ++x) keep(x);
    }
    void stop() {
        for (const pid_t pid : burners_) ::kill(pid, SIGKILL);
        for (const pid_t pid : burners_)
            while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
            }
        burners_.clear();
    }
    std::vector<pid_t> burners_;
};

std::vector<Result> measure(const Figure& figure, const Options& options) {
    std::optional<CpuLoad> load;
    if (figure.loaded) load.emplace();
    std::vector<Result> results;
    for (const Impl& impl : figure.impls) {
        Result result;
        result.impl = impl.name;
        if (options.iterations || figure.fixed_iterations) {
            result.iterations = options.iterations ? *options.iterations : *figure.fixed_iterations;
            impl.run(result.iterations);  // warm-up
        } else {
            result.iterations = calibrate(impl.run, options.min_time);
        }
        results.push_back(std::move(result));
    }
    const std::size_t count = figure.impls.size();
    for (int round = 0; round < options.rounds; ++round) {
        // Each round starts with the next implementation, so none is always first (or always
        // right after another one's children have exited).
        for (std::size_t k = 0; k < count; ++k) {
            const std::size_t index = (std::size_t(round) + k) % count;
            Result& result = results[index];
            const Seconds took = figure.impls[index].run(result.iterations);
            const double value = figure.unit.from_seconds_per_iteration(took.count() / double(result.iterations));
            require(std::isfinite(value), "a batch took no measurable time; raise --min-time or --iterations");
            result.per_round.push_back(value);
        }
    }
    return results;
}

void print_json(const Figure& figure, const std::vector<Result>& results) {
    for (const Result& r : results) {
        const auto [min, max] = std::minmax_element(r.per_round.begin(), r.per_round.end());
        fmt::print(R"({{"name": {}, "impl": {}, "value": {:.6g}, "unit": {}, "min": {:.6g}, "max": {:.6g}, )"
                   R"("rounds": {}, "iterations": {}}})"
                   "\n",
                   json_string(figure.name), json_string(r.impl), median(r.per_round), json_string(figure.unit.name),
                   *min, *max, r.per_round.size(), r.iterations);
    }
}

// A figure implementation whose rounds differ by more than this factor is bimodal: a behaviour
// that depends on where and when the processes ran, to find and explain, not to average away.
constexpr double max_spread = 5.0;

// Whether a figure's rounds can tell bimodal behaviour from noise: with fewer than 3 rounds one
// slow round is all there is, and a batch of a few milliseconds (the smoke test's --min-time
// 0.001, or a fixed --iterations) can be slowed several times by one time slice of another
// process. Calibrated batches of 50 ms or more, or the figure's own fixed size, average that out.
bool spread_checked(const Figure& figure, const Options& options) {
    if (!options.spread_check || options.rounds < 3 || options.iterations) return false;
    return figure.fixed_iterations || options.min_time >= Seconds(0.05);
}

struct Bimodal {
    std::string figure;
    std::string unit;
    std::string impl;
    double min, median, max;
};

void collect_bimodal(const Figure& figure, const std::vector<Result>& results, std::vector<Bimodal>& bimodal) {
    for (const Result& r : results) {
        const auto [min, max] = std::minmax_element(r.per_round.begin(), r.per_round.end());
        const double low = std::max(*min, figure.spread_floor), high = std::max(*max, figure.spread_floor);
        // Zero against anything more is spread, unless the figure has a floor.
        const bool spread = low > 0 ? high / low > max_spread : high > 0;
        if (spread) bimodal.push_back({figure.name, figure.unit.name, r.impl, *min, median(r.per_round), *max});
    }
}

constexpr int name_width = 34;

void print_table_header() {
    fmt::print("{:<{}} {:<6} {:>11} {:>11} {:>11}  {:<14} {}\n", "figure", name_width, "impl", "median", "min", "max",
               "unit", "rounds x iterations");
}

// Rates (x/s) are better high, times better low; the ratio is always mproc's cost over raw's.
double cost_ratio(const Unit& unit, double mproc, double raw) {
    return unit.name.ends_with("/s") ? raw / mproc : mproc / raw;
}

void print_table(const Figure& figure, const std::vector<Result>& results) {
    bool first = true;
    for (const Result& r : results) {
        const auto [min, max] = std::minmax_element(r.per_round.begin(), r.per_round.end());
        fmt::print("{:<{}} {:<6} {:>11.4g} {:>11.4g} {:>11.4g}  {:<14} {} x {}\n", first ? figure.name : "", name_width,
                   r.impl, median(r.per_round), *min, *max, figure.unit.name, r.per_round.size(), r.iterations);
        first = false;
    }
    const auto find = [&](std::string_view impl) {
        return std::find_if(results.begin(), results.end(), [&](const Result& r) { return r.impl == impl; });
    };
    if (const auto mproc = find("mproc"), raw = find("raw"); mproc != results.end() && raw != results.end()) {
        fmt::print("{:<{}} mproc/raw {:.3g}x\n", "", name_width,
                   cost_ratio(figure.unit, median(mproc->per_round), median(raw->per_round)));
    }
}

}  // namespace

Unit millis_per(std::string_view what) {
    return {fmt::format("ms/{}", what), [](double s) { return s * 1e3; }};
}

Unit micros_per(std::string_view what) {
    return {fmt::format("us/{}", what), [](double s) { return s * 1e6; }};
}

Unit nanos_per(std::string_view what) {
    return {fmt::format("ns/{}", what), [](double s) { return s * 1e9; }};
}

Unit per_second(std::string_view what) {
    return {fmt::format("{}/s", what), [](double s) { return 1 / s; }};
}

Unit megabytes_per_second(double bytes_per_iteration) {
    return {"MB/s", [bytes_per_iteration](double s) { return bytes_per_iteration / s / 1e6; }};
}

namespace {

void add_to_registry(Figure figure) {
    auto& figures = registry();
    // Sorted by name so that the output order does not depend on the order of static
    // initialization across files.
    const auto at = std::upper_bound(figures.begin(), figures.end(), figure.name,
                                     [](const std::string& name, const Figure& f) { return name < f.name; });
    figures.insert(at, std::move(figure));
}

}  // namespace

Register::Register(Figure figure) { add_to_registry(std::move(figure)); }

Register::Register(Figure figure, LoadedTwin twin) {
    Figure loaded = figure;
    loaded.name += ".loaded";
    if (!twin.description.empty()) loaded.description = std::move(twin.description);
    loaded.description += "; beside one busy-looping process per CPU";
    loaded.impls.clear();
    loaded.loaded = true;
    for (const std::string& name : twin.impls) {
        const auto impl = std::find_if(figure.impls.begin(), figure.impls.end(),
                                       [&](const Impl& i) { return i.name == name; });
        if (impl == figure.impls.end())
            throw std::logic_error(fmt::format("{}: no implementation '{}' for its loaded twin", figure.name, name));
        loaded.impls.push_back(*impl);
    }
    for (Impl& impl : twin.own_impls) loaded.impls.push_back(std::move(impl));
    add_to_registry(std::move(figure));
    add_to_registry(std::move(loaded));
}

void require(bool condition, std::string_view what) {
    if (!condition) throw std::runtime_error(std::string(what));
}

void skip_unless(bool condition, std::string_view why) {
    if (!condition) throw Skipped(std::string(why));
}

int run_cli(int argc, char** argv) {
    const Options options = parse_options(argc, argv);
    const std::vector<const Figure*> figures = select_figures(options.prefixes);
    if (figures.empty()) {
        std::fprintf(stderr, "mproc_bench: nothing selected (try --list)\n");
        return 2;
    }
    if (options.list) {
        for (const Figure* f : figures) fmt::print("{:<{}} {:<14} {}\n", f->name, name_width, f->unit.name, f->description);
        return 0;
    }
    if (!options.json) print_table_header();
    int status = 0;
    std::vector<Bimodal> bimodal;
    for (const Figure* figure : figures) {
        try {
            const std::vector<Result> results = measure(*figure, options);
            options.json ? print_json(*figure, results) : print_table(*figure, results);
            if (spread_checked(*figure, options)) collect_bimodal(*figure, results, bimodal);
        } catch (const Skipped& e) {
            std::fflush(stdout);
            std::fprintf(stderr, "mproc_bench: %s: skipped: %s\n", figure->name.c_str(), e.what());
        } catch (const std::exception& e) {
            std::fflush(stdout);
            std::fprintf(stderr, "mproc_bench: %s: %s\n", figure->name.c_str(), e.what());
            status = 1;
        }
        // Flushed per figure: a long run shows progress, and a forked child never inherits
        // unwritten output.
        std::fflush(stdout);
    }
    for (const Bimodal& b : bimodal) {
        std::fprintf(stderr,
                     "mproc_bench: bimodal: %s %s: rounds from %.4g to %.4g %s (median %.4g), more than %gx apart\n",
                     b.figure.c_str(), b.impl.c_str(), b.min, b.max, b.unit.c_str(), b.median, max_spread);
    }
    if (!bimodal.empty()) {
        std::fprintf(stderr, "mproc_bench: %zu bimodal figure implementation(s); --no-spread-check reports them "
                     "without failing\n", bimodal.size());
        status = 1;
    }
    return status;
}

}  // namespace bench
