// cpu_count() and process_cpu_count(): online CPUs, the affinity mask, the environment override.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include "mproc/process.hpp"

TEST(CpuCount, MatchesOnlineCpus) {
    EXPECT_EQ(mproc::cpu_count(), static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
}

TEST(CpuCount, ProcessCpuCountHonoursAffinity) {
    // In a child, so that the test process keeps its own mask.
    mproc::Process p([] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (::sched_setaffinity(0, sizeof set, &set) != 0) mproc::exit(2);
        mproc::exit(mproc::process_cpu_count() == 1 && mproc::cpu_count() == static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)) ? 0 : 1);
    });
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(CpuCount, EnvironmentOverride) {
    ::setenv("MPROC_CPU_COUNT", "7", 1);
    EXPECT_EQ(mproc::cpu_count(), 7);
    EXPECT_EQ(mproc::process_cpu_count(), 7);
    ::setenv("MPROC_CPU_COUNT", "seven", 1);
    EXPECT_THROW(mproc::cpu_count(), mproc::UsageError);
    ::setenv("MPROC_CPU_COUNT", "0", 1);
    EXPECT_THROW(mproc::process_cpu_count(), mproc::UsageError);
    ::unsetenv("MPROC_CPU_COUNT");
    EXPECT_GE(mproc::process_cpu_count(), 1);
}
