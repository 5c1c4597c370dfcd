#pragma once
// What the manager suites share: a fixture parameterised by start method, its instantiation over
// every start method, and small checks.
#include <gtest/gtest.h>

#include <cstddef>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/context.hpp"
#include "mproc/managers.hpp"

namespace mproc_test {

// Managers (and the children handed their proxies) started by the method under test.
class ManagerFixture : public ::testing::TestWithParam<mproc::StartMethod> {
protected:
    mproc::ManagerOptions options() const { return {.context = GetParam()}; }
    mproc::Process child_process(auto target, auto... args) const {
        return mproc::Process(mproc::ProcessOptions{.start_method = GetParam()}, target, args...);
    }
    // CPython's run_worker: target(args...) in a child, which must end with exit code 0 (a failed
    // check there throws, and an uncaught exception is exit code 1 with its text on stderr).
    void run_worker(auto target, auto... args) const {
        auto child = child_process(target, args...);
        child.start();
        child.join();
        EXPECT_EQ(child.exitcode(), 0);
    }
    // CPython's run_threads (Bunch) for the manager variant: f(args...) in parties - 1 children
    // and in this process; every child must end with exit code 0.
    template <class F, class... A>
    void run_parties(int parties, F f, A... args) const {
        std::vector<mproc::Process> others;
        for (int i = 0; i < parties - 1; ++i) others.push_back(child_process(f, args...));
        for (auto& p : others) p.start();
        f(args...);
        for (auto& p : others) {
            p.join();
            EXPECT_EQ(p.exitcode(), 0);
        }
    }
};

inline std::string manager_start_method_name(const ::testing::TestParamInfo<mproc::StartMethod>& info) {
    return std::string(mproc::to_string(info.param));
}

// The what() of the E that call() throws, or a text saying that it threw none.
template <class E, class F>
std::string thrown_text(F&& call) {
    try {
        call();
    } catch (const E& e) {
        return e.what();
    }
    return "nothing thrown";
}

// Python's list(range(n)).
inline std::vector<int> range(int n) {
    std::vector<int> out(static_cast<std::size_t>(n));
    std::iota(out.begin(), out.end(), 0);
    return out;
}

// A check inside a child: a failure ends the child with exit code 1 and the text on stderr.
inline void require(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("check failed: ") + what);
}

}  // namespace mproc_test

// Runs the tests of `fixture` under fork, spawn and forkserver.
#define MPROC_MANAGER_TESTS_UNDER_EVERY_START_METHOD(fixture)                                                      \
    INSTANTIATE_TEST_SUITE_P(StartMethods, fixture,                                                                \
                             ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,                \
                                               mproc::StartMethod::forkserver),                                    \
                             mproc_test::manager_start_method_name)
