// The library logger: Python's format, levels and handlers.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "helpers/test_helpers.hpp"
#include "mproc/logging.hpp"
#include "mproc/process.hpp"

namespace {
class LoggerTest : public ::testing::Test {
protected:
    void TearDown() override {
        mproc::get_logger().clear_handlers();
        mproc::get_logger().set_level(mproc::logging::NOTSET);
    }
};
}  // namespace

TEST_F(LoggerTest, LevelNamesArePythons) {
    EXPECT_EQ(mproc::level_name(mproc::logging::DEBUG), "DEBUG");
    EXPECT_EQ(mproc::level_name(mproc::logging::SUBDEBUG), "SUBDEBUG");
    EXPECT_EQ(mproc::level_name(mproc::logging::SUBWARNING), "SUBWARNING");
    EXPECT_EQ(mproc::level_name(mproc::logging::CRITICAL), "CRITICAL");
    EXPECT_EQ(mproc::level_name(static_cast<mproc::LogLevel>(12)), "Level 12");
    EXPECT_EQ(static_cast<int>(mproc::logging::DEBUG), 10);
    EXPECT_EQ(static_cast<int>(mproc::logging::INFO), 20);
}

TEST_F(LoggerTest, UnsetLevelActsAsWarning) {
    auto& log = mproc::get_logger();
    EXPECT_EQ(log.level(), mproc::logging::NOTSET);
    EXPECT_EQ(log.effective_level(), mproc::logging::WARNING);
    EXPECT_FALSE(log.is_enabled_for(mproc::logging::INFO));
    EXPECT_TRUE(log.is_enabled_for(mproc::logging::WARNING));
}

TEST_F(LoggerTest, LogToStderrUsesPythonsFormat) {
    mproc::testing::CapturedStderr err;
    auto& log = mproc::log_to_stderr(mproc::logging::INFO);
    EXPECT_EQ(&log, &mproc::get_logger());
    log.info("hello {}", 42);
    log.debug("not shown");
    log.warning("careful");
    EXPECT_EQ(err.text(), "[INFO/MainProcess] hello 42\n[WARNING/MainProcess] careful\n");
}

TEST_F(LoggerTest, LogToStderrWithoutLevelKeepsTheLevel) {
    mproc::testing::CapturedStderr err;
    auto& log = mproc::log_to_stderr();
    EXPECT_EQ(log.level(), mproc::logging::NOTSET);
    log.info("quiet");
    log.setLevel(mproc::logging::INFO);
    log.info("loud");
    EXPECT_EQ(err.text(), "[INFO/MainProcess] loud\n");
}

TEST_F(LoggerTest, HandlersReceiveRecordsWithTheProcessName) {
    struct Record {
        mproc::LogLevel level;
        std::string process, message;
    };
    std::vector<Record> records;
    auto& log = mproc::get_logger();
    log.set_level(mproc::logging::SUBDEBUG);
    log.add_handler([&records](mproc::LogLevel l, std::string_view p, std::string_view m) {
        records.push_back({l, std::string(p), std::string(m)});
    });
    log.sub_debug("a");
    log.sub_warning("b {}", "c");
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].level, mproc::logging::SUBDEBUG);
    EXPECT_EQ(records[0].process, "MainProcess");
    EXPECT_EQ(records[1].message, "b c");
}

TEST_F(LoggerTest, ChildLogsUnderItsOwnName) {
    mproc::testing::CapturedStderr err;
    mproc::log_to_stderr(mproc::logging::INFO);
    mproc::Process p({.name = "logger-child"}, [] { mproc::get_logger().warning("from the child"); });
    p.start();
    p.join();
    std::string text = err.text();
    auto lines = mproc::testing::split_lines(text);
    std::vector<std::string> expected = {
        "[INFO/logger-child] child process calling self.run()",
        "[WARNING/logger-child] from the child",
        "[INFO/logger-child] process shutting down",
        "[INFO/logger-child] process exiting with exitcode 0",
    };
    EXPECT_EQ(lines, expected) << text;
}
