// wordcount_demo: a map-reduce word count on a Pool over real text, timed against the same work
// done in one process.
//
//   wordcount_demo [--workers N] [--ext .md,.hpp,.cpp,.py,.h,.c,.txt,.rst] [--max-mb N] [PATH...]
//   mpirun -np 3 wordcount_demo --mpi [--workers N] [--max-mb N] [PATH...]
//
// With --mpi the pool is an mproc::mpi::Pool (mproc/mpi.hpp): the map runs on the serving MPI
// ranks (--workers: workers per rank), which read the files by name, so on a cluster PATH must be
// on a file system every host sees. The counts must equal the single process's either way.
//
// A PATH that is a file is counted whatever its name; a directory is searched recursively for files
// with one of the extensions, skipping hidden directories and CMake build trees. The PATHs are taken
// in order, the files of each in path order, until --max-mb MiB are counted (default: no limit).
//
// Default text: the current directory (this repository, when scripts/demo runs it), then the
// headers under /usr/include, the Python modules under /usr/lib/python3 and the documents under
// /usr/share/doc, up to 64 MiB in all. The repository alone (about 2 MB, 15 ms of counting) is too
// little work for a pool to show: starting the workers, sending the tables back and adding them
// up cost a few milliseconds, which a count of a few hundred milliseconds makes small.
//
// Words follow multiprocessing_wordcount's rules (spec/pymotw.md, example 25),
// in ASCII: lines whose first non-blank characters are ".." are skipped, punctuation separates
// words, words are lower-cased, and words with anything but letters in them (digits, non-ASCII
// bytes) and 20 stop words are dropped. The most common words are listed by count, then
// alphabetically.
//
// Map: each task counts the words of a batch of files in a worker (the files travel as names) and
// sends back one (word, count) table. Reduce: the parent adds the tables up as they arrive.
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mproc/cpu.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>
#include <mproc/progress.hpp>
#ifdef MPROC_DEMO_WITH_MPI
#include <mproc/mpi.hpp>
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Counts = std::unordered_map<std::string, std::uint64_t>;
using WordTable = std::vector<std::pair<std::string, std::uint64_t>>;

// The default text's size: enough counting (a few hundred milliseconds) that a pool's fixed costs
// weigh little, little enough that the demo takes seconds.
constexpr std::uintmax_t kDefaultMegabytes = 64;

constexpr std::string_view kStopWords[] = {"a",  "an", "and", "are", "as", "be",  "by",   "for", "if", "in",
                                           "is", "it", "of",  "or",  "py", "rst", "that", "the", "to", "with"};

// What each byte is in the "C" locale: a letter, a separator (blank or punctuation), or anything
// else, which may sit inside a token but makes it no word (a digit, a non-ASCII byte).
enum class ByteClass : unsigned char { other, letter, separator };
constexpr auto kByteClass = [] {
    std::array<ByteClass, 256> table{};
    for (int c = 'a'; c <= 'z'; ++c) table[c] = table[c - 'a' + 'A'] = ByteClass::letter;
    for (unsigned char c : std::string_view(" \t\n\v\f\r!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")) table[c] = ByteClass::separator;
    return table;
}();

void count_line(std::string_view line, Counts& counts) {
    const auto first = line.find_first_not_of(" \t\n\v\f\r");
    if (first != std::string_view::npos && line.substr(first, 2) == "..") return;
    std::string word;
    bool letters_only = true;
    auto end_word = [&] {
        if (!word.empty() && letters_only) ++counts[word];
        word.clear();
        letters_only = true;
    };
    for (unsigned char c : line) {
        switch (kByteClass[c]) {
            case ByteClass::separator: end_word(); break;
            case ByteClass::letter: word += static_cast<char>(c | 0x20); break;  // ASCII lower case
            case ByteClass::other: word += static_cast<char>(c), letters_only = false; break;
        }
    }
    end_word();
}

// Adds the words of a file to `counts`, stop words included (dropped once at the end: cheaper per
// distinct word than per occurrence).
void count_file(const std::string& path, Counts& counts) {
    std::ifstream in(path, std::ios::binary);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    for (std::size_t begin = 0; begin < text.size();) {
        const std::size_t end = std::min(text.find('\n', begin), text.size());
        count_line(std::string_view(text).substr(begin, end - begin), counts);
        begin = end + 1;
    }
}

void drop_stop_words(Counts& counts) {
    for (std::string_view stop : kStopWords) counts.erase(std::string(stop));
}

// CPU time of the calling thread: set against the wall-clock time of a count, it says how many CPUs
// the count had, which on a machine shared with other programs may be fewer than its workers.
std::chrono::nanoseconds thread_cpu_time() {
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

// What a map task sends back: one table for a whole batch of files, far less than a table per file
// (let alone a (word, 1) pair per word); the number of files, for the progress bar; and the CPU
// time the worker spent counting.
struct BatchCount {
    std::size_t files = 0;
    std::chrono::nanoseconds cpu{};
    WordTable table;
    template <class Archive>
    void serialize(Archive& archive) {
        archive(files, cpu, table);
    }
};

BatchCount count_files(const std::vector<std::string>& batch) {
    const auto cpu_start = thread_cpu_time();
    Counts counts;
    for (const auto& path : batch) count_file(path, counts);
    drop_stop_words(counts);
    return {.files = batch.size(),
            .cpu = thread_cpu_time() - cpu_start,
            .table = {std::make_move_iterator(counts.begin()), std::make_move_iterator(counts.end())}};
}

// `parts` batches of about the same size: the largest file first, each into the lightest batch.
std::vector<std::vector<std::string>> balance(const std::vector<std::pair<std::uintmax_t, std::string>>& by_size,
                                              std::size_t parts) {
    std::vector<std::vector<std::string>> batches(parts);
    std::vector<std::uintmax_t> load(parts);
    for (const auto& [size, path] : by_size) {
        const auto lightest = static_cast<std::size_t>(std::ranges::min_element(load) - load.begin());
        load[lightest] += size + 1;
        batches[lightest].push_back(path);
    }
    std::erase_if(batches, [](const auto& batch) { return batch.empty(); });
    return batches;
}

struct Run {
    Counts counts;
    Clock::duration time{};
    Clock::duration starting{};  // of `time`, starting the workers
    std::chrono::nanoseconds cpu{};  // CPU time spent counting, in all processes together
    int workers = 1;
};

// How many CPUs a run kept busy counting, on average.
double cpus_busy(const Run& run) {
    return std::chrono::duration<double>(run.cpu).count() / std::chrono::duration<double>(run.time).count();
}

Run count_in_one_process(const std::vector<std::pair<std::uintmax_t, std::string>>& files) {
    Run run;
    const auto start = Clock::now();
    const auto cpu_start = thread_cpu_time();
    for (const auto& [size, path] : files) count_file(path, run.counts);
    drop_stop_words(run.counts);
    run.cpu = thread_cpu_time() - cpu_start;
    run.time = Clock::now() - start;
    return run;
}

// The map-reduce on any pool (a local Pool here; the same code runs on another mproc::BasicPool).
// Adds to the run's counts and CPU time; the caller closes the pool.
void count_words(mproc::BasicPool& pool, const std::vector<std::pair<std::uintmax_t, std::string>>& files,
                 Run& run, const mproc::ProgressCallback& progress) {
    // Four batches a worker: few messages, and a worker that finishes early takes another batch.
    const auto batches = balance(files, 4 * static_cast<std::size_t>(pool.processes()));
    std::size_t done = 0;
    // Unordered: the parent adds up each table while the workers are still counting.
    auto results = pool.imap_unordered(count_files, batches);
    while (auto result = results.next()) {
        for (auto& [word, n] : result->table) run.counts[std::move(word)] += n;
        run.cpu += result->cpu;
        if (progress) progress(done += result->files, files.size());
    }
}

// A local Pool, or with --mpi the MPI pool of the serving ranks.
std::unique_ptr<mproc::BasicPool> make_pool(bool on_mpi, std::optional<int> workers) {
#ifdef MPROC_DEMO_WITH_MPI
    if (on_mpi) return std::make_unique<mproc::mpi::Pool>(mproc::mpi::PoolOptions{.workers_per_rank = workers});
#else
    static_cast<void>(on_mpi);
#endif
    return std::make_unique<mproc::Pool>(mproc::PoolOptions{.processes = workers});
}

Run count_on_a_pool(const std::vector<std::pair<std::uintmax_t, std::string>>& files, bool on_mpi,
                    std::optional<int> workers, const mproc::ProgressCallback& progress) {
    Run run;
    const auto start = Clock::now();
    auto pool = make_pool(on_mpi, workers);
    run.starting = Clock::now() - start;
    run.workers = pool->processes();
    count_words(*pool, files, run, progress);
    run.time = Clock::now() - start;
    pool->close();
    pool->join();
    return run;
}

std::vector<std::string> find_files(const std::string& path, const std::set<std::string>& extensions) {
    if (!fs::is_directory(path)) return {path};
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
        const std::string name = it->path().filename().string();
        if (it->is_directory() && (name.front() == '.' || fs::exists(it->path() / "CMakeCache.txt"))) {
            it.disable_recursion_pending();
        } else if (it->is_regular_file() && extensions.contains(it->path().extension().string())) {
            files.push_back(it->path().string());
        }
    }
    std::ranges::sort(files);
    return files;
}

// Where the text came from, for the report: a PATH, and how much of it was counted.
struct Source {
    std::string path;
    std::size_t files = 0;
    std::uintmax_t bytes = 0;
    bool cut = false;  // the byte limit stopped the count inside this PATH
};

struct Text {
    std::vector<std::pair<std::uintmax_t, std::string>> files;  // (size, path), largest first
    std::vector<Source> sources;
    std::uintmax_t bytes = 0;
};

// The files of `paths`, in order, each file once, until `max_bytes` are taken; a PATH that does
// not exist is left out.
Text gather_text(const std::vector<std::string>& paths, const std::set<std::string>& extensions,
                 std::optional<std::uintmax_t> max_bytes) {
    Text text;
    std::set<std::string> seen;
    bool full = false;
    for (const auto& path : paths) {
        if (full) break;
        if (!fs::exists(path)) continue;
        Source& source = text.sources.emplace_back(Source{.path = path});
        for (auto& file : find_files(path, extensions)) {
            std::error_code error;
            const std::uintmax_t size = fs::file_size(file, error);
            if (error || !seen.insert(file).second) continue;
            if (max_bytes && text.bytes + size > *max_bytes) {
                source.cut = full = true;
                break;
            }
            ++source.files;
            source.bytes += size;
            text.bytes += size;
            text.files.emplace_back(size, std::move(file));
        }
    }
    std::ranges::sort(text.files, std::greater<>());
    return text;
}

std::string thousands(std::uint64_t n) {
    std::string digits = std::to_string(n);
    for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<std::size_t>(i), ",");
    return digits;
}

double milliseconds(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr,
                 "wordcount_demo: %s\nusage: wordcount_demo [--mpi] [--workers N] [--ext .md,.hpp,.cpp,.py,.h,.c,.txt,.rst] "
                 "[--max-mb N] [PATH...]\n",
                 message);
    std::exit(2);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    bool on_mpi = false;
    for (int i = 1; i < argc; ++i) on_mpi |= std::string_view(argv[i]) == "--mpi";
    if (on_mpi) {
#ifdef MPROC_DEMO_WITH_MPI
        mproc::mpi::init(argc, argv);  // the serving ranks stay inside, serving the map
#else
        usage("--mpi: this build of mproc has no MPI (install Open MPI: scripts/setup)");
#endif
    }
    std::optional<int> workers;
    std::set<std::string> extensions{".md", ".hpp", ".cpp", ".py", ".h", ".c", ".txt", ".rst"};
    std::optional<std::uintmax_t> max_bytes;
    std::vector<std::string> paths;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if ((arg == "--workers" || arg == "--ext" || arg == "--max-mb") && i + 1 == argc)
            usage("an option needs a value");
        if (arg == "--mpi") continue;
        if (arg == "--workers") {
            workers = std::atoi(argv[++i]);
            if (*workers < 1) usage("--workers needs a positive number");
        } else if (arg == "--max-mb") {
            const long megabytes = std::atol(argv[++i]);
            if (megabytes < 1) usage("--max-mb needs a positive number");
            max_bytes = static_cast<std::uintmax_t>(megabytes) << 20;
        } else if (arg == "--ext") {
            extensions.clear();
            std::istringstream list(argv[++i]);
            for (std::string ext; std::getline(list, ext, ',');)
                if (!ext.empty()) extensions.insert(ext.front() == '.' ? ext : "." + ext);
        } else if (arg.starts_with("-")) {
            usage("unknown option");
        } else {
            paths.emplace_back(arg);
        }
    }
    if (paths.empty()) {
        paths = {".", "/usr/include", "/usr/lib/python3", "/usr/share/doc"};
        if (!max_bytes) max_bytes = kDefaultMegabytes << 20;
    }

    const Text text = gather_text(paths, extensions, max_bytes);
    const auto& files = text.files;
    std::printf("Counting the words of %zu files (%s bytes)\n", files.size(), thousands(text.bytes).c_str());
    for (const auto& source : text.sources)
        std::printf("  from %s: %s files, %s bytes%s\n", source.path.c_str(), thousands(source.files).c_str(),
                    thousands(source.bytes).c_str(), source.cut ? " (the first, up to the byte limit)" : "");
    std::fflush(stdout);

    // Both ways then read the files from memory, not from the disk; and each runs three times, the
    // best time counting, so that a hiccup of the machine does not decide the comparison.
    for (const auto& [size, path] : files)
        std::ifstream(path, std::ios::binary).ignore(std::numeric_limits<std::streamsize>::max());
    const mproc::ProgressBar bar("map");
    Run pooled = count_on_a_pool(files, on_mpi, workers, bar);
    Run single = count_in_one_process(files);
    for (int again = 0; again < 2; ++again) {
        if (Run r = count_on_a_pool(files, on_mpi, workers, {}); r.time < pooled.time) pooled = std::move(r);
        if (Run r = count_in_one_process(files); r.time < single.time) single = std::move(r);
    }
    if (pooled.counts != single.counts) {
        std::fprintf(stderr, "wordcount_demo: the pool's counts differ from the single process's\n");
        return 1;
    }

    std::vector<std::pair<std::string, std::uint64_t>> ranked(single.counts.begin(), single.counts.end());
    std::ranges::sort(ranked, [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    const std::size_t shown = std::min<std::size_t>(20, ranked.size());
    int width = 0;
    for (std::size_t i = 0; i < shown; ++i) width = std::max(width, static_cast<int>(ranked[i].first.size()) + 1);
    std::printf("\nTOP %zu WORDS BY FREQUENCY\n\n", shown);
    for (std::size_t i = 0; i < shown; ++i)
        std::printf("%-*s: %7s\n", width, ranked[i].first.c_str(), thousands(ranked[i].second).c_str());

    std::uint64_t words = 0;
    for (const auto& [word, n] : single.counts) words += n;
    std::printf("\nfiles: %zu  bytes: %s  words: %s  distinct words: %s\n", files.size(), thousands(text.bytes).c_str(),
                thousands(words).c_str(), thousands(single.counts.size()).c_str());
#ifdef MPROC_DEMO_WITH_MPI
    if (on_mpi)
        std::printf("MPI pool: %d workers on %d serving ranks (the counts equal the single process's)\n", pooled.workers,
                    mproc::mpi::size() - 1);
#endif
    std::printf("pool of %d workers: %8.1f ms  (%.1f ms of it starting the workers)\n", pooled.workers,
                milliseconds(pooled.time), milliseconds(pooled.starting));
    std::printf("one process:        %8.1f ms\n", milliseconds(single.time));
    std::printf("speedup:            %8.2fx  with %d workers (best of 3 runs each)\n",
                milliseconds(single.time) / milliseconds(pooled.time), pooled.workers);
    const int cpus = mproc::process_cpu_count();
    double load = 0;
    ::getloadavg(&load, 1);
    std::printf("CPUs busy counting: %6.2f in the pool, %.2f in one process  (%d CPUs here, load average %.2f)\n",
                cpus_busy(pooled), cpus_busy(single), cpus, load);
    if (single.time < std::chrono::milliseconds(50))
        std::printf("\nThat is little work: starting the workers and adding up their tables weigh in it. Give it\n"
                    "more text (wordcount_demo DIR...) and the speedup approaches the number of workers.\n");
    else if (cpus_busy(pooled) < 0.8 * std::min(pooled.workers, cpus))
        std::printf("\nThe workers had fewer CPUs than there are of them: other programs are using this machine's\n"
                    "CPUs. On an idle machine the speedup approaches the number of workers.\n");
}
