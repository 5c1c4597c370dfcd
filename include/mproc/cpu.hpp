#pragma once
// How many CPUs there are and how many this process may use (Python's os.cpu_count() and
// os.process_cpu_count()). process.hpp includes this header, as Python's module re-exports
// cpu_count().
namespace mproc {

// The number of online CPUs (Python's cpu_count()). The environment variable MPROC_CPU_COUNT
// overrides it, as PYTHON_CPU_COUNT does in Python 3.13.
int cpu_count();

// The number of CPUs this process may use: the CPU affinity mask, further limited by a cgroup
// CPU quota (cpu.max, rounded up). The default size of a Pool. MPROC_CPU_COUNT overrides it.
int process_cpu_count();

}  // namespace mproc
