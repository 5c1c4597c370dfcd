// Contexts and the default start method (Python's get_context, set_start_method, ...).
#include <gtest/gtest.h>

#include <cstdlib>

#include "mproc/context.hpp"

namespace {
class ContextTest : public ::testing::Test {
protected:
    void TearDown() override {
        ::unsetenv("MPROC_START_METHOD");
        mproc::set_start_method(std::nullopt, true);
    }
};
}  // namespace

TEST_F(ContextTest, DefaultIsForkAndIsFixedByAsking) {
    ::unsetenv("MPROC_START_METHOD");
    mproc::set_start_method(std::nullopt, true);
    EXPECT_EQ(mproc::get_start_method(true), std::nullopt);
    EXPECT_EQ(mproc::get_start_method(), "fork");
    EXPECT_EQ(mproc::get_start_method(true), "fork");  // asking fixed it
    EXPECT_EQ(mproc::get_all_start_methods(), (std::vector<std::string>{"fork", "spawn", "forkserver"}));
    EXPECT_EQ(mproc::get_context().start_method(), mproc::StartMethod::fork);
}

TEST_F(ContextTest, SetStartMethodOnce) {
    mproc::set_start_method(std::nullopt, true);
    mproc::set_start_method("spawn");
    EXPECT_EQ(mproc::get_start_method(), "spawn");
    try {
        mproc::set_start_method("fork");
        ADD_FAILURE() << "a second set_start_method was accepted";
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "context has already been set");
    }
    mproc::set_start_method("forkserver", true);
    EXPECT_EQ(mproc::get_start_method(), "forkserver");
    EXPECT_EQ(mproc::get_all_start_methods().front(), "forkserver");
    mproc::Process p([] {});
    EXPECT_EQ(p.start_method(), mproc::StartMethod::forkserver);
}

TEST_F(ContextTest, EnvironmentSetsTheDefault) {
    mproc::set_start_method(std::nullopt, true);
    ::setenv("MPROC_START_METHOD", "spawn", 1);
    EXPECT_EQ(mproc::get_start_method(), "spawn");
    mproc::set_start_method(std::nullopt, true);
    ::setenv("MPROC_START_METHOD", "vfork", 1);
    EXPECT_THROW(mproc::get_start_method(), mproc::UsageError);
}

TEST_F(ContextTest, GetContextByName) {
    EXPECT_EQ(mproc::get_context("spawn").name(), "spawn");
    EXPECT_EQ(mproc::get_context("forkserver").start_method(), mproc::StartMethod::forkserver);
    EXPECT_EQ(&mproc::get_context("fork"), &static_cast<const mproc::Context&>(mproc::fork_context));
    try {
        mproc::get_context("threads");
        ADD_FAILURE();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "cannot find context for 'threads'");
    }
    auto p = mproc::get_context("spawn").Process({.name = "via-context"}, [] {});
    EXPECT_EQ(p.start_method(), mproc::StartMethod::spawn);
    EXPECT_EQ(p.name(), "via-context");
}
