// cpu_count() and process_cpu_count(): how many CPUs there are, and how many this process may use.
#include <sched.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/cpu.hpp"

namespace mproc {
namespace {

std::optional<int> count_from_environment() {
    const char* text = std::getenv("MPROC_CPU_COUNT");
    if (text == nullptr || *text == '\0') return std::nullopt;
    char* end = nullptr;
    long n = std::strtol(text, &end, 10);
    if (*end != '\0' || n < 1 || n > 1'000'000)
        throw UsageError(std::string("MPROC_CPU_COUNT must be a positive integer, not '") + text + "'");
    return static_cast<int>(n);
}

// The cgroup v2 quota "cpu.max" ("max 100000" or "150000 100000") along the process's cgroup path,
// the tightest one of the path's ancestors; falls back to cgroup v1's cfs files.
std::optional<int> cgroup_cpu_limit() {
    std::optional<int> limit;
    auto consider = [&limit](double quota, double period) {
        if (quota <= 0 || period <= 0) return;
        int cpus = static_cast<int>(std::ceil(quota / period));
        if (cpus < 1) cpus = 1;
        if (!limit || cpus < *limit) limit = cpus;
    };

    std::ifstream cgroup_file("/proc/self/cgroup");
    std::string line;
    while (std::getline(cgroup_file, line)) {
        if (line.rfind("0::", 0) == 0) {  // cgroup v2 unified hierarchy
            std::string path = line.substr(3);
            for (;;) {
                std::ifstream max_file("/sys/fs/cgroup" + path + "/cpu.max");
                std::string quota;
                double period = 0;
                if (max_file >> quota >> period && quota != "max") consider(std::stod(quota), period);
                if (path.empty() || path == "/") break;
                auto slash = path.rfind('/');
                path = slash == 0 ? "/" : path.substr(0, slash);
            }
        }
    }
    if (!limit) {  // cgroup v1
        std::ifstream quota_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
        std::ifstream period_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
        double quota = 0, period = 0;
        if (quota_file >> quota && period_file >> period) consider(quota, period);
    }
    return limit;
}

}  // namespace

int cpu_count() {
    if (auto forced = count_from_environment()) return *forced;
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) throw ProcessError("cannot determine number of cpus");
    return static_cast<int>(n);
}

int process_cpu_count() {
    if (auto forced = count_from_environment()) return *forced;
    int n = 0;
    cpu_set_t set;
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        n = CPU_COUNT(&set);
    } else {
        n = cpu_count();
    }
    if (auto quota = cgroup_cpu_limit(); quota && *quota < n) n = *quota;
    return n < 1 ? 1 : n;
}

}  // namespace mproc
