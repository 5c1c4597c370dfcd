#pragma once
// What the pool suites share: a fixture parameterised by start method, and the instantiation over
// every start method.
#include <gtest/gtest.h>

#include <string>

#include "mproc/context.hpp"
#include "mproc/pool.hpp"

namespace mproc_test {

class PoolFixture : public ::testing::TestWithParam<mproc::StartMethod> {
protected:
    // A pool of `processes` workers started by the method under test.
    mproc::PoolOptions options(int processes = 2) {
        mproc::PoolOptions o;
        o.processes = processes;
        o.context = GetParam();
        return o;
    }
};

inline std::string start_method_name(const ::testing::TestParamInfo<mproc::StartMethod>& info) {
    return std::string(mproc::to_string(info.param));
}

}  // namespace mproc_test

// Runs the tests of `fixture` under fork, spawn and forkserver.
#define MPROC_POOL_TESTS_UNDER_EVERY_START_METHOD(fixture)                                                         \
    INSTANTIATE_TEST_SUITE_P(StartMethods, fixture,                                                                \
                             ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,                \
                                               mproc::StartMethod::forkserver),                                    \
                             mproc_test::start_method_name)
