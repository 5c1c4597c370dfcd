// ShareableList and SharedMemoryManager (Python's multiprocessing.shared_memory.ShareableList and
// multiprocessing.managers.SharedMemoryManager): CPython's own tests of them, ported
// (Lib/test/_test_multiprocessing.py, _TestSharedMemory; each test names the one it ports), the
// layout Python reads, and children that attach by name, once per start method. Every test
// leaves /dev/shm as it found it.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <limits>
#include <string>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/shareable_list.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/shared_memory_manager.hpp"

using namespace std::chrono_literals;
using mproc::Bytes;
using mproc::None;
using mproc::ShareableList;
using mproc::ShareableValue;
using mproc::StartMethod;

namespace {

class ShareableListPython : public mproc::testing::LeakCheckedTest {
protected:
    ShareableListPython() : LeakCheckedTest("a ShareableList test", false) {}
};

struct ManagerOwner {
    mproc::Process process;
    std::vector<std::string> names;  // of the segment and the list it made
    int server_pid = 0;
};

class ShareableListConformance : public mproc::testing::PerStartMethodTest {
protected:
    ShareableListConformance() : PerStartMethodTest("a ShareableList conformance test") {}
    // A child running own_a_manager, once it has reported.
    static ManagerOwner started_owner(bool wait_to_be_killed);
};

// Per start method, for tests whose SharedMemoryManager runs in this process: /dev/shm is checked
// as PerStartMethodTest checks it, descriptors are not (a proxy's thread keeps its connection to a
// server that was shut down until its next call there, as managers.hpp's clients do).
class SharedMemoryManagerConformance : public ::testing::TestWithParam<StartMethod> {
protected:
    SharedMemoryManagerConformance() : watchdog_(std::chrono::seconds(90), "a SharedMemoryManager test") {}
    void SetUp() override {
        mproc::set_start_method(std::string(mproc::to_string(GetParam())), true);
        shm_ = mproc::testing::shm_entries();
    }
    void TearDown() override {
        mproc::set_start_method(std::nullopt, true);
        EXPECT_TRUE(mproc::testing::new_shm_entries(shm_).empty()) << "/dev/shm entries leaked";
    }

private:
    mproc::testing::Watchdog watchdog_;
    std::set<std::string> shm_;
};

std::string unique(const char* tag) { return std::string("mproc_test_") + tag + "_" + std::to_string(::getpid()); }

std::vector<ShareableValue> range(std::int64_t n) {
    std::vector<ShareableValue> out;
    for (std::int64_t i = 0; i < n; ++i) out.emplace_back(i);
    return out;
}

template <class E, class F>
void expect_error(F f, const std::string& message) {
    try {
        f();
        ADD_FAILURE() << "expected an error: " << message;
    } catch (const E& e) {
        EXPECT_EQ(std::string(e.what()), message);
    }
}

std::int64_t read_i64(const ShareableList& sl, std::size_t at) {
    std::int64_t v;
    std::memcpy(&v, sl.shm().buf().data() + at, sizeof v);
    return v;
}

std::string read_text(const ShareableList& sl, std::size_t at, std::size_t size) {
    return {reinterpret_cast<const char*>(sl.shm().buf().data() + at), size};
}

bool gone_or_zombie(int pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(file, stat)) return true;
    const auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// ---- children ----

// Attaches by name, checks what the parent stored, and changes items, types included.
void attach_check_and_change(std::string name) {
    ShareableList sl({.name = name});
    if (sl.size() != 6 || sl[0].get() != ShareableValue(std::int64_t{7}) || sl[3].get() != ShareableValue("howdy") ||
        sl[4].get() != ShareableValue(Bytes("raw")) || sl[5].get() != ShareableValue(None{}))
        mproc::exit(3);
    sl[0] = 8;
    sl[1] = "str";         // a float's slot takes a str of up to 8 bytes
    sl[2] = None{};
    sl[3] = "hi";
    sl[4] = Bytes(std::string_view("r\0w", 3));  // NUL inside is kept; only trailing ones are padding
    sl[5] = 2.5;
    sl.shm().close();
}

void set_item(ShareableList sl, std::int64_t index, std::string value) {
    sl[index] = value;
    sl.shm().close();
}

void use_managed_segments(mproc::SharedMemory shm, ShareableList sl) {
    std::memcpy(shm.buf().data(), "child", 5);
    sl[0] = sl[0].get() == ShareableValue("howdy") ? "done" : "wrong";
}

// Starts a SharedMemoryManager, makes a segment and a list, reports their names and the server's
// pid; then waits to be killed, or returns without shutting the manager down (the exit sequence
// does).
void own_a_manager(mproc::Connection report, bool wait_to_be_killed) {
    auto* smm = new mproc::SharedMemoryManager;  // never destroyed here: the exit sequence shuts it down
    smm->start();
    mproc::SharedMemory shm = smm->SharedMemory(64);
    ShareableList sl = smm->ShareableList({1, "two"});
    report.send(std::vector<std::string>{shm.name(), sl.name()});
    report.send(std::int64_t{*smm->process()->pid()});
    while (wait_to_be_killed) ::pause();
}

ManagerOwner ShareableListConformance::started_owner(bool wait_to_be_killed) {
    auto [here, there] = mproc::Pipe();
    ManagerOwner owner{started(own_a_manager, there, wait_to_be_killed), {}, 0};
    there.close();
    EXPECT_TRUE(here.poll(30s));
    owner.names = here.recv<std::vector<std::string>>();
    owner.server_pid = static_cast<int>(here.recv<std::int64_t>());
    return owner;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, ShareableListConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);
INSTANTIATE_TEST_SUITE_P(StartMethods, SharedMemoryManagerConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

// CPython: _TestSharedMemory.test_shared_memory_ShareableList_basics
TEST_F(ShareableListPython, Basics) {
    ShareableList sl({"howdy", Bytes("HoWdY"), -273.154, 100, None{}, true, 42});

    // repr names the segment and shows the items.
    EXPECT_NE(sl.repr().find(sl.shm().name()), std::string::npos);
    EXPECT_EQ(sl.repr(), "ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42], name='" + sl.name() + "')");

    expect_error<mproc::IndexError>([&] { sl.get(7); }, "index out of range");
    expect_error<mproc::IndexError>([&] { sl[7] = 2; }, "assignment index out of range");

    // A str over a str keeps its format.
    const std::string format_before = sl.format();
    sl[0] = "howdy";
    EXPECT_EQ(sl.format(), format_before);

    EXPECT_EQ(sl.format(), "8s8sdqxxxxxx?xxxxxxxx?q");
    EXPECT_EQ(sl.size(), 7U);

    expect_error<mproc::ValueError>([&] { sl.index("100"); }, "'100' not in this container");
    EXPECT_EQ(sl.index(100), 3U);

    EXPECT_EQ(sl[0], ShareableValue("howdy"));
    EXPECT_EQ(sl[-2], ShareableValue(true));

    const std::vector<ShareableValue> expected{"howdy", Bytes("HoWdY"), -273.154, 100, None{}, true, 42};
    EXPECT_EQ(sl.tolist(), expected);
    std::vector<ShareableValue> iterated;
    for (ShareableValue v : sl) iterated.push_back(v);
    EXPECT_EQ(iterated, expected);

    sl[3] = 42;
    EXPECT_EQ(sl[3], ShareableValue(42));
    sl[4] = "some";  // None's slot takes a str
    EXPECT_EQ(sl[4], ShareableValue("some"));
    EXPECT_EQ(sl.format(), "8s8sdq8sxxxxxxx?q");
    expect_error<mproc::ValueError>([&] { sl[4] = "far too many"; }, "bytes/str item exceeds available storage");
    EXPECT_EQ(sl[4], ShareableValue("some"));
    sl[0] = "encod\xc3\xa9s";  // exactly 8 bytes of UTF-8
    EXPECT_EQ(sl[0], ShareableValue("encod\xc3\xa9s"));
    EXPECT_EQ(sl[1], ShareableValue(Bytes("HoWdY")));  // no spillage
    expect_error<mproc::ValueError>([&] { sl[0] = "encod\xc3\xa9" "es"; }, "bytes/str item exceeds available storage");
    EXPECT_EQ(sl[1], ShareableValue(Bytes("HoWdY")));
    expect_error<mproc::ValueError>([&] { sl[1] = Bytes("123456789"); }, "bytes/str item exceeds available storage");
    EXPECT_EQ(sl[1], ShareableValue(Bytes("HoWdY")));

    EXPECT_EQ(sl.count(42), 2U);
    EXPECT_EQ(sl.count(Bytes("HoWdY")), 1U);
    EXPECT_EQ(sl.count(Bytes("adios")), 0U);

    // A duplicate, under a name of its own.
    const std::string name_duplicate = unique("sl_duplicate");
    ShareableList sl_copy(sl.tolist(), {.name = name_duplicate});
    EXPECT_NE(sl.name(), sl_copy.name());
    EXPECT_EQ(sl_copy.name(), name_duplicate);
    EXPECT_EQ(sl.tolist(), sl_copy.tolist());
    EXPECT_EQ(sl.format(), sl_copy.format());
    sl_copy[-1] = 77;
    EXPECT_EQ(sl_copy[-1], ShareableValue(77));
    EXPECT_NE(sl[-1], ShareableValue(77));
    sl_copy.shm().close();
    sl_copy.shm().unlink();

    // A second handle on the same list.
    ShareableList sl_tethered({.name = sl.name()});
    EXPECT_EQ(sl.name(), sl_tethered.name());
    sl_tethered[-1] = 880;
    EXPECT_EQ(sl[-1], ShareableValue(880));
    sl_tethered.shm().close();

    sl.shm().close();
    sl.shm().unlink();

    // An empty list.
    ShareableList empty_sl(std::vector<ShareableValue>{});
    EXPECT_EQ(empty_sl.size(), 0U);
    EXPECT_EQ(empty_sl.format(), "");
    EXPECT_EQ(empty_sl.count("any"), 0U);
    expect_error<mproc::ValueError>([&] { empty_sl.index(None{}); }, "None not in this container");
    empty_sl.shm().close();
    empty_sl.shm().unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_ShareableList_pickling
TEST_F(ShareableListPython, EncodeDecodeIsTheSameList) {
    ShareableList sl(range(10));
    const auto encoded = mproc::dumps(sl);
    auto decoded = mproc::loads<ShareableList>(encoded);
    EXPECT_EQ(decoded[-1], ShareableValue(9));
    EXPECT_EQ(decoded.name(), sl.name());

    decoded[4] = "changed";
    EXPECT_EQ(sl[4], ShareableValue("changed"));
    sl[3] = "newvalue";
    EXPECT_EQ(decoded[3], ShareableValue("newvalue"));

    // Travels by name: the encoding does not grow with the list.
    ShareableList larger_sl(range(400));
    EXPECT_EQ(mproc::dumps(larger_sl).size(), encoded.size());
    larger_sl.shm().close();
    larger_sl.shm().unlink();

    decoded.shm().close();
    sl.shm().close();
    sl.shm().unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_ShareableList_pickling_dead_object
TEST_F(ShareableListPython, DecodingAfterCloseAndUnlinkIsFileNotFound) {
    ShareableList sl(range(10));
    const auto encoded = mproc::dumps(sl);
    sl.shm().close();
    sl.shm().unlink();
    try {
        mproc::loads<ShareableList>(encoded);
        ADD_FAILURE() << "decoded a list whose segment is gone";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
}

// The bytes Python's struct module writes for ShareableList([7, 'howdy', None, 1.5, True,
// b'12345678']): native byte order, numbers read back natively here.
TEST_F(ShareableListPython, LayoutIsPythons) {
    ShareableList sl({7, "howdy", None{}, 1.5, true, Bytes("12345678")});
    const std::size_t n = 6;
    EXPECT_EQ(read_i64(sl, 0), 6);
    // Slots: 8, 8 ('howdy' takes 8 * (5 / 8 + 1)), 8, 8, 8, 16 (8 bytes take 8 * (8 / 8 + 1)).
    const std::vector<std::int64_t> offsets{0, 8, 16, 24, 32, 40, 56};
    for (std::size_t i = 0; i <= n; ++i) EXPECT_EQ(read_i64(sl, 8 * (i + 1)), offsets[i]) << i;
    const std::size_t data = (n + 2) * 8;
    EXPECT_EQ(read_i64(sl, data), 7);
    EXPECT_EQ(read_text(sl, data + 8, 8), std::string("howdy\0\0\0", 8));
    EXPECT_EQ(read_text(sl, data + 16, 8), std::string(8, '\0'));
    double d;
    std::memcpy(&d, sl.shm().buf().data() + data + 24, sizeof d);
    EXPECT_EQ(d, 1.5);
    EXPECT_EQ(read_text(sl, data + 32, 8), std::string("\0\0\0\0\0\0\0\1", 8));
    EXPECT_EQ(read_text(sl, data + 40, 16), std::string("12345678\0\0\0\0\0\0\0\0", 16));
    const std::size_t formats = data + 56;
    EXPECT_EQ(read_text(sl, formats, 48), std::string("q\0\0\0\0\0\0\0" "8s\0\0\0\0\0\0" "xxxxxx?x"
                                                      "d\0\0\0\0\0\0\0" "xxxxxxx?" "16s\0\0\0\0\0", 48));
    EXPECT_EQ(read_text(sl, formats + 48, 6), std::string("\0\1\3\0\0\2", 6));
    // Python's struct.calcsize of the whole: no byte more.
    EXPECT_EQ(sl.shm().size(), formats + 48 + 6);
    sl.shm().close();
    sl.shm().unlink();
}

TEST_F(ShareableListPython, NegativeIndexesCountFromTheEnd) {
    ShareableList sl({1, 2, 3});
    EXPECT_EQ(sl[-1], ShareableValue(3));
    EXPECT_EQ(sl[-3], ShareableValue(1));
    sl[-3] = 10;
    EXPECT_EQ(sl[0], ShareableValue(10));
    // Past the front is out of range too (Python would wrap once more, a bug; docs/differences.md).
    expect_error<mproc::IndexError>([&] { sl.get(-4); }, "index out of range");
    expect_error<mproc::IndexError>([&] { sl.set(-4, 1); }, "assignment index out of range");
    sl.shm().close();
    sl.shm().unlink();
}

// Python's == for count() and index(): numbers across types, exactly; NaN never; str is not bytes.
TEST_F(ShareableListPython, CountAndIndexUsePythonsEquality) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    ShareableList sl({1, 1.0, true, "1", Bytes("1"), nan, None{}, std::int64_t{9007199254740993}});
    EXPECT_EQ(sl.count(1), 3U);
    EXPECT_EQ(sl.count(true), 3U);
    EXPECT_EQ(sl.count(1.0), 3U);
    EXPECT_EQ(sl.count("1"), 1U);
    EXPECT_EQ(sl.count(Bytes("1")), 1U);
    EXPECT_EQ(sl.count(nan), 0U);
    EXPECT_EQ(sl.count(None{}), 1U);
    EXPECT_EQ(sl.index(Bytes("1")), 4U);
    EXPECT_EQ(sl.index(None{}), 6U);
    // 2**53 + 1 is not the double 2**53.
    EXPECT_EQ(sl.count(9007199254740992.0), 0U);
    EXPECT_EQ(sl.count(std::int64_t{9007199254740993}), 1U);
    expect_error<mproc::ValueError>([&] { sl.index(2.5); }, "2.5 not in this container");
    expect_error<mproc::ValueError>([&] { sl.index(Bytes("it's")); }, "b\"it's\" not in this container");
    EXPECT_TRUE(mproc::python_equal(false, 0));
    EXPECT_FALSE(mproc::python_equal("a", Bytes("a")));
    sl.shm().close();
    sl.shm().unlink();
}

// A str's slot is Python's, sized by its characters, wherever its UTF-8 bytes fit that; where they
// do not (Python would cut them short), by its bytes (docs/differences.md).
TEST_F(ShareableListPython, AStrIsSizedByItsCharactersUnlessItsBytesDoNotFit) {
    const std::string fits = "encod\xc3\xa9s";                          // 7 characters, 8 bytes: slot 8
    const std::string too_long = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";  // 5 characters, 10 bytes: slot 16
    ShareableList sl({fits, too_long, Bytes(fits)});
    EXPECT_EQ(sl.format(), "8s16s16s");
    EXPECT_EQ(sl[0], ShareableValue(fits));
    EXPECT_EQ(sl[1], ShareableValue(too_long));
    sl.shm().close();
    sl.shm().unlink();
}

TEST_F(ShareableListPython, TrailingNulsAreThePaddingOfTheSlot) {
    ShareableList sl({Bytes(std::string("a\0b\0", 4)), std::string("x\0", 2)});
    EXPECT_EQ(sl[0], ShareableValue(Bytes(std::string("a\0b", 3))));
    EXPECT_EQ(sl[1], ShareableValue("x"));
    sl.shm().close();
    sl.shm().unlink();
}

TEST_F(ShareableListPython, MisuseIsAClearError) {
    expect_error<mproc::UsageError>([] { ShareableList({.name = ""}); }, "a ShareableList to attach to needs a name");
    try {
        ShareableList({.name = unique("absent")});
        ADD_FAILURE() << "attached a list that does not exist";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
    // A segment whose bytes are not a list: an error, never a read outside it.
    mproc::SharedMemory shm({.create = true, .size = 64});
    std::memset(shm.buf().data(), 0xff, 64);
    EXPECT_THROW(ShareableList({.name = shm.name()}), mproc::DecodeError);
    const std::int64_t huge = std::int64_t{1} << 40;
    std::memcpy(shm.buf().data(), &huge, sizeof huge);
    EXPECT_THROW(ShareableList({.name = shm.name()}), mproc::DecodeError);
    shm.close();
    shm.unlink();

    // A str whose format would not fit 8 characters (Python asserts).
    EXPECT_THROW(ShareableList({std::string(9'999'992, 'x')}), mproc::ValueError);

    ShareableList sl({1});
    sl.shm().close();
    EXPECT_THROW(sl.get(0), mproc::UsageError);
    sl.shm().unlink();
}

// CPython: _TestSharedMemory.test_shared_memory_SharedMemoryManager_basics (the server under
// every start method).
TEST_P(SharedMemoryManagerConformance, Basics) {
    mproc::SharedMemoryManager smm1;
    expect_error<mproc::UsageError>([&] { smm1.SharedMemory(9); }, "the manager is not started or connected");
    smm1.start();
    std::vector<ShareableList> lol;
    for (int i = 5; i < 10; ++i) lol.push_back(smm1.ShareableList(range(i)));
    std::vector<mproc::SharedMemory> lom;
    for (int j = 32; j < 128; j += 16) lom.push_back(smm1.SharedMemory(j));
    EXPECT_EQ(smm1.list_segments().size(), lol.size() + lom.size());
    ShareableList doppleganger_list0({.name = lol[0].name()});
    EXPECT_EQ(doppleganger_list0.size(), 5U);
    mproc::SharedMemory doppleganger_shm0({.name = lom[0].name()});
    EXPECT_GE(doppleganger_shm0.buf().size(), 32U);
    const std::string held_name = lom[0].name();
    smm1.shutdown();
    try {
        mproc::SharedMemory absent_shm({.name = held_name});
        ADD_FAILURE() << "the segment is still there after shutdown";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
    expect_error<mproc::UsageError>([&] { smm1.ShareableList({1}); }, "Manager has shut down");

    // Python's `with`: the destructor shuts the server down.
    std::string held_list;
    {
        mproc::SharedMemoryManager smm2;
        smm2.start();
        ShareableList sl = smm2.ShareableList({"h", "o", "w", "d", "y"});
        mproc::SharedMemory shm = smm2.SharedMemory(128);
        held_list = sl.name();
    }
    try {
        ShareableList absent_sl({.name = held_list});
        ADD_FAILURE() << "the list is still there after the manager's end";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
}

// CPython: _TestSharedMemory.test_shared_memory_SharedMemoryServer_ignores_sigint
TEST_P(SharedMemoryManagerConformance, ServerIgnoresSigint) {
    struct sigaction before {};
    ::sigaction(SIGINT, nullptr, &before);
    mproc::SharedMemoryManager smm;
    smm.start();
    ShareableList sl = smm.ShareableList(range(10));
    ASSERT_EQ(::kill(*smm.process()->pid(), SIGINT), 0);
    ShareableList sl2 = smm.ShareableList(range(10));
    EXPECT_EQ(sl2[9], ShareableValue(9));
    EXPECT_TRUE(smm.process()->is_alive());
    // This process's own handling of SIGINT is untouched.
    struct sigaction after {};
    ::sigaction(SIGINT, nullptr, &after);
    EXPECT_EQ(after.sa_handler, before.sa_handler);
    const std::string name = sl.name();
    smm.shutdown();
    EXPECT_EQ(smm.process()->exitcode(), 0);
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// A child attaches by name and changes items, types too; the parent sees every change.
TEST_P(ShareableListConformance, AChildAttachesByNameAndChangesItems) {
    ShareableList sl({7, 1.5, true, "howdy", Bytes("raw"), None{}});
    auto p = started(attach_check_and_change, sl.name());
    ASSERT_EQ(joined(p), 0);
    const std::vector<ShareableValue> expected{8, "str", None{}, "hi", Bytes(std::string("r\0w", 3)), 2.5};
    EXPECT_EQ(sl.tolist(), expected);
    EXPECT_EQ(sl.format(), "q8sxxxxxx?x8s8sd");
    sl.shm().close();
    sl.shm().unlink();
}

// CPython's pickling test across processes: the list travels by name and the child's change is
// the parent's.
TEST_P(ShareableListConformance, TravelsToAChildByName) {
    ShareableList sl(range(5));
    auto p = started(set_item, sl, std::int64_t{-1}, std::string("changed"));
    ASSERT_EQ(joined(p), 0);
    EXPECT_EQ(sl[4], ShareableValue("changed"));
    sl.shm().close();
    sl.shm().unlink();
}

// The segments of a SharedMemoryManager are used by children and gone after shutdown.
TEST_P(SharedMemoryManagerConformance, ChildrenUseTheManagersSegments) {
    mproc::SharedMemoryManager smm;
    smm.start();
    mproc::SharedMemory shm = smm.SharedMemory(16);
    ShareableList sl = smm.ShareableList({"howdy"});
    mproc::Process p(use_managed_segments, shm, sl);
    p.start();
    p.join();
    ASSERT_EQ(p.exitcode(), 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(shm.buf().data()), 5), "child");
    EXPECT_EQ(sl[0], ShareableValue("done"));
    smm.release_segment(shm.name());
    EXPECT_FALSE(mproc::testing::shm_exists(shm.name()));
    EXPECT_EQ(smm.list_segments(), std::vector<std::string>{sl.name()});
    smm.shutdown();
    EXPECT_FALSE(mproc::testing::shm_exists(sl.name()));
    EXPECT_EQ(sl[0], ShareableValue("done"));  // the mapping stays
}

// An owner that ends without shutdown(): its exit sequence shuts the server down, which unlinks.
TEST_P(ShareableListConformance, ASharedMemoryManagersOwnerThatReturnsLeavesNothing) {
    ManagerOwner owner = started_owner(false);
    ASSERT_EQ(joined(owner.process), 0);
    for (const auto& name : owner.names) EXPECT_FALSE(mproc::testing::shm_exists(name)) << name;
    EXPECT_TRUE(gone_or_zombie(owner.server_pid));
}

// An owner killed by SIGKILL: its server unlinks what it tracks, then ends. Nothing in this test
// process attaches or creates a segment meanwhile (that would sweep them away itself).
TEST_P(ShareableListConformance, ASharedMemoryManagersOwnerKilledLeavesNothingInDevShm) {
    ManagerOwner owner = started_owner(true);
    for (const auto& name : owner.names) ASSERT_TRUE(mproc::testing::shm_exists(name)) << name;
    owner.process.kill();
    joined(owner.process);
    for (const auto& name : owner.names)
        EXPECT_TRUE(mproc::testing::eventually([&] { return !mproc::testing::shm_exists(name); })) << name;
    EXPECT_TRUE(mproc::testing::eventually([&] { return gone_or_zombie(owner.server_pid); }))
        << "the server outlived its owner";
}
