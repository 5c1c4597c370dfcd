// Named shared memory as CPython's own tests use it (Lib/test/_test_multiprocessing.py,
// _TestSharedMemory), once per start method where processes take part. Each test names the
// CPython test it ports. Every test leaves /dev/shm as it found it, as CPython's do by unlinking
// in a cleanup: close() then unlink() is Python's order, and it works here too.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/codec.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

class ShmConformance : public mproc::testing::PerStartMethodTest {
protected:
    ShmConformance() : PerStartMethodTest("a shared memory conformance test") {}
    void expect_an_attacher_that_ends_leaves_the_segment(bool track);
};

class ShmPython : public mproc::testing::LeakCheckedTest {
protected:
    ShmPython() : LeakCheckedTest("a shared memory test", false) {}
};

std::string unique(const char* tag) { return std::string("mproc_test_") + tag + "_" + std::to_string(::getpid()); }

std::string text_of(const mproc::SharedMemory& shm, std::size_t size) {
    return {reinterpret_cast<const char*>(shm.buf().data()), size};
}

void write_text(const mproc::SharedMemory& shm, const std::string& text) {
    std::memcpy(shm.buf().data(), text.data(), text.size());
}

template <class F>
void expect_os_error(F f, std::errc code, const std::string& message) {
    try {
        f();
        ADD_FAILURE() << "expected OSError: " << message;
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_EQ(std::string(e.what()), message);
    }
}

// CPython's _attach_existing_shmem_then_write, for a name and for a SharedMemory.
void attach_by_name_then_write(std::string name, std::string data) {
    mproc::SharedMemory local({.name = name});
    write_text(local, data);
    local.close();
}

void write_then_close(mproc::SharedMemory shm, std::string data) {
    write_text(shm, data);
    shm.close();
}

void attach_then_close(std::string name, bool track) {
    mproc::SharedMemory mem({.name = name, .track = track});
    mem.close();
}

void create_and_wait(std::string name, mproc::Event created) {
    mproc::SharedMemory shm({.name = name, .create = true, .size = 10});
    created.set();
    for (;;) ::pause();
}

void close_then_unlink_in_child(mproc::SharedMemory shm, mproc::Event done) {
    shm.close();
    shm.unlink();
    done.set();
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, ShmConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

// CPython: _TestSharedMemory.test_shared_memory_name_with_embedded_null
TEST_F(ShmPython, NameWithEmbeddedNullIsRefused) {
    const std::string name = unique("null");
    mproc::SharedMemory sms({.name = name, .create = true, .size = 512});
    try {
        mproc::SharedMemory bad({.name = name + std::string("\0a", 2), .size = 512});
        ADD_FAILURE() << "attached a name with an embedded null";
    } catch (const mproc::UsageError& e) {  // Python: ValueError
        EXPECT_STREQ(e.what(), "embedded null byte");
    }
    sms.close();
    sms.unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_basics
TEST_F(ShmPython, Basics) {
    const std::string name = unique("tsmb");
    mproc::SharedMemory sms({.name = name, .create = true, .size = 512});
    EXPECT_EQ(sms.name(), name);
    EXPECT_GE(sms.size(), 512U);
    EXPECT_GE(sms.buf().size(), sms.size());
    EXPECT_NE(sms.repr().find(sms.name()), std::string::npos);
    EXPECT_NE(sms.repr().find(std::to_string(sms.size())), std::string::npos);

    sms.buf()[0] = std::byte{42};
    EXPECT_EQ(sms.buf()[0], std::byte{42});

    mproc::SharedMemory also_sms({.name = name});
    EXPECT_EQ(also_sms.buf()[0], std::byte{42});
    also_sms.close();

    // Attaching with a size: the size is ignored.
    mproc::SharedMemory same_sms({.name = name, .size = static_cast<std::int64_t>(20 * sms.size())});
    EXPECT_LT(same_sms.size(), 20 * sms.size());
    same_sms.close();

    EXPECT_THROW(mproc::SharedMemory({.create = true, .size = -2}), mproc::UsageError);
    EXPECT_THROW(mproc::SharedMemory({.create = false}), mproc::UsageError);

    // Unlinked once only: the second unlink() is FileNotFoundError.
    const std::string dbl = unique("dblunlink");
    mproc::SharedMemory sms_uno({.name = dbl, .create = true, .size = 5000});
    EXPECT_GE(sms_uno.size(), 5000U);
    mproc::SharedMemory sms_duo({.name = dbl});
    sms_duo.unlink();
    sms_duo.close();
    sms_uno.close();
    expect_os_error([&] { sms_uno.unlink(); }, std::errc::no_such_file_or_directory,
                    "unlinking shared memory '" + dbl + "': No such file or directory");

    expect_os_error([&] { mproc::SharedMemory({.name = name, .create = true, .size = 512}); }, std::errc::file_exists,
                    "creating shared memory '" + name + "': File exists");
    expect_os_error([&] { mproc::SharedMemory({.name = unique("notthere")}); }, std::errc::no_such_file_or_directory,
                    "attaching shared memory '" + unique("notthere") + "': No such file or directory");

    sms.close();
    sms.unlink();  // CPython's addCleanup(sms.unlink), after close()
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// CPython: _TestSharedMemory.test_invalid_shared_memory_creation
TEST_F(ShmPython, InvalidCreation) {
    EXPECT_THROW(mproc::SharedMemory({.create = true, .size = -1}), mproc::UsageError);
    EXPECT_THROW(mproc::SharedMemory({.create = true, .size = 0}), mproc::UsageError);
    EXPECT_THROW(mproc::SharedMemory({.create = true}), mproc::UsageError);  // no size given
}

// CPython: _TestSharedMemory.test_shared_memory_pickle_unpickle
TEST_F(ShmPython, EncodeDecodeIsTheSameMemory) {
    mproc::SharedMemory sms({.create = true, .size = 512});
    write_text(sms, "pickle");
    auto sms2 = mproc::loads<mproc::SharedMemory>(mproc::dumps(sms));
    EXPECT_EQ(sms.name(), sms2.name());
    EXPECT_EQ(text_of(sms2, 6), "pickle");
    write_text(sms, "newval");
    EXPECT_EQ(text_of(sms2, 6), "newval");
    write_text(sms2, "oldval");
    EXPECT_EQ(text_of(sms, 6), "oldval");
    sms2.close();
    sms.close();
    sms.unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_pickle_unpickle_dead_object
TEST_F(ShmPython, DecodingAfterCloseAndUnlinkIsFileNotFound) {
    mproc::SharedMemory sms({.create = true, .size = 512});
    write_text(sms, "pickle");
    const auto encoded = mproc::dumps(sms);
    sms.close();
    sms.unlink();
    expect_os_error([&] { mproc::loads<mproc::SharedMemory>(encoded); }, std::errc::no_such_file_or_directory,
                    "attaching shared memory '" + sms.name() + "': No such file or directory");
}

// CPython: _TestSharedMemory.test_shared_memory_across_processes
TEST_P(ShmConformance, AcrossProcesses) {
    mproc::SharedMemory sms({.create = true, .size = 512});
    {
        auto p = started(attach_by_name_then_write, sms.name(), std::string("howdy"));
        EXPECT_EQ(joined(p), 0);
    }
    EXPECT_EQ(text_of(sms, 5), "howdy");
    {
        auto p = started(write_then_close, sms, std::string("HELLO"));
        EXPECT_EQ(joined(p), 0);
    }
    EXPECT_EQ(text_of(sms, 5), "HELLO");
    sms.close();
    sms.unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_cleaned_after_process_termination
TEST_P(ShmConformance, CleanedAfterProcessTermination) {
    const std::string name = unique("terminated");
    mproc::Event created;
    auto p = started(create_and_wait, name, created);
    ASSERT_TRUE(created.wait(20s));
    p.terminate();
    joined(p);
    // Attaching sweeps first: the segment of a creator that was terminated is gone.
    expect_os_error([&] { mproc::SharedMemory({.name = name}); }, std::errc::no_such_file_or_directory,
                    "attaching shared memory '" + name + "': No such file or directory");
}

// A child attaches with `track`, closes and ends; the segment is still there for its creator,
// after a sweep too.
void ShmConformance::expect_an_attacher_that_ends_leaves_the_segment(bool track) {
    mproc::SharedMemory mem({.create = true, .size = 10});
    auto p = started(attach_then_close, mem.name(), track);
    EXPECT_EQ(joined(p), 0);
    mproc::sweep_shared_memory();
    EXPECT_TRUE(mproc::testing::shm_exists(mem.name()));
    mproc::SharedMemory mem2({.name = mem.name()});
    mem2.close();
    mem.unlink();
    mem.close();
}

// CPython: _TestSharedMemory.test_shared_memory_untracking
TEST_P(ShmConformance, AnUntrackedAttacherThatEndsLeavesTheSegment) {
    expect_an_attacher_that_ends_leaves_the_segment(false);
}

// CPython: _TestSharedMemory.test_shared_memory_tracking. A deliberate difference
// (docs/differences.md): in Python, a process that attaches with track=True and ends has its
// resource tracker remove the segment under its creator (CPython issue 82300). Here a user that
// ends never removes a segment that a living process still uses.
TEST_P(ShmConformance, ATrackedAttacherThatEndsLeavesTheSegmentToItsCreator) {
    expect_an_attacher_that_ends_leaves_the_segment(true);
}

// Python's documented order in a child: a handle received as an argument is closed, then its
// name unlinked, while the parent still has the memory mapped.
TEST_P(ShmConformance, AChildClosesThenUnlinks) {
    mproc::SharedMemory shm({.create = true, .size = 16});
    write_text(shm, "kept");
    mproc::Event done;
    auto p = started(close_then_unlink_in_child, shm, done);
    EXPECT_EQ(joined(p), 0);
    EXPECT_TRUE(done.is_set());
    EXPECT_FALSE(mproc::testing::shm_exists(shm.name()));
    EXPECT_EQ(text_of(shm, 4), "kept");  // the mapping stays valid
    shm.close();
    expect_os_error([&] { shm.unlink(); }, std::errc::no_such_file_or_directory,
                    "unlinking shared memory '" + shm.name() + "': No such file or directory");
}

// Python keeps the name after the creator's close(): a child started later attaches by name.
TEST_P(ShmConformance, AChildAttachesByNameAfterTheCreatorClosed) {
    mproc::SharedMemory shm({.create = true, .size = 16});
    const std::string name = shm.name();
    shm.close();
    {
        auto p = started(attach_by_name_then_write, name, std::string("late"));
        EXPECT_EQ(joined(p), 0);
    }
    mproc::SharedMemory again({.name = name});
    EXPECT_EQ(text_of(again, 4), "late");
    again.close();
    shm.unlink();
}
