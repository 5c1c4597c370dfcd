// Managers against hostile clients and dead processes (spec/faults.md rows 22, 24, 26): garbage,
// wrong keys and idle sockets are dropped while the others are served; a dead server is a typed
// error at once; a server never outlives its owner. And a remote manager between two programs.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/logging.hpp"
#include "mproc/managers.hpp"

using namespace std::chrono_literals;

extern char** environ;

namespace {

int connect_raw(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// A server run by a thread of the test, so that its log lines can be read here.
class InProcessServer : public ::testing::Test {
protected:
    void SetUp() override {
        address_ = std::get<mproc::UnixAddress>(mproc::connection::arbitrary_address(mproc::Family::af_unix)).path;
        mproc::get_logger().add_handler([this](mproc::LogLevel, std::string_view, std::string_view message) {
            std::lock_guard lock(mutex_);
            logs_.emplace_back(message);
        });
        mproc::get_logger().set_level(mproc::LogLevel::debug);
        server_manager_.emplace(mproc::ManagerOptions{.address = mproc::UnixAddress(address_), .authkey = key_});
        server_.emplace(server_manager_->get_server());
        thread_ = std::thread([this] { server_->serve_forever(); });
        client_.emplace(mproc::ManagerOptions{.address = mproc::UnixAddress(address_), .authkey = key_});
        client_->connect();
    }
    void TearDown() override {
        client_->shutdown();
        thread_.join();
        mproc::get_logger().clear_handlers();
        mproc::get_logger().set_level(mproc::LogLevel::notset);
        ::unlink(address_.c_str());
    }
    bool logged(std::string_view text) {
        std::lock_guard lock(mutex_);
        for (const auto& line : logs_)
            if (line.find(text) != std::string::npos) return true;
        return false;
    }
    // The server logs from its own threads, in its own time: wait for the line, generously.
    bool wait_logged(std::string_view text) {
        return mproc::testing::eventually([this, text] { return logged(text); });
    }

    const mproc::AuthKey key_ = mproc::AuthKey::random();
    std::string address_;
    std::optional<mproc::BaseManager> server_manager_;
    std::optional<mproc::Server> server_;
    std::thread thread_;
    std::optional<mproc::SyncManager> client_;
    std::mutex mutex_;
    std::vector<std::string> logs_;
};

TEST_F(InProcessServer, WrongAuthkeyIsRefusedAndLogged) {
    mproc::SyncManager intruder({.address = mproc::UnixAddress(address_), .authkey = mproc::AuthKey("wrong")});
    EXPECT_THROW(intruder.connect(), mproc::AuthenticationError);
    EXPECT_TRUE(wait_logged("refused a client"));
    auto d = client_->dict<int, int>();
    d[1] = 2;
    EXPECT_EQ(d.getitem(1), 2);
}

TEST_F(InProcessServer, GarbageBeforeAuthenticationIsDropped) {
    const int fd = connect_raw(address_);
    ASSERT_GE(fd, 0);
    std::vector<char> garbage(4096);
    for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
    (void)!::write(fd, garbage.data(), garbage.size());
    char byte;
    // The server hangs up on it.
    ssize_t n;
    do n = ::read(fd, &byte, 1);
    while (n > 0);
    ::close(fd);
    auto l = client_->list<int>();
    l.append(5);
    EXPECT_EQ(l.copy(), std::vector<int>{5});
}

TEST_F(InProcessServer, GarbageAfterAuthenticationDropsThatClientOnly) {
    auto d = client_->dict<int, int>();
    mproc::Connection rogue = mproc::Client(mproc::UnixAddress(address_), {.authkey = key_});
    rogue.send_bytes(std::string_view("this is not a request"));
    EXPECT_THROW(rogue.recv_bytes(), mproc::EOFError);
    EXPECT_TRUE(wait_logged("dropped a client that sent a malformed request"));
    d[3] = 4;
    EXPECT_EQ(d.getitem(3), 4);
}

TEST_F(InProcessServer, HostileLengthAfterAuthenticationIsDropped) {
    auto d = client_->dict<int, int>();
    mproc::Connection rogue = mproc::Client(mproc::UnixAddress(address_), {.authkey = key_});
    // A frame that announces 1 GiB - 1 bytes (under the limit) and brings 3: the server must not
    // allocate for what never comes, nor wait once the peer is gone.
    const unsigned char header[] = {0x3f, 0xff, 0xff, 0xff, 'a', 'b', 'c'};
    ASSERT_EQ(::write(rogue.fileno(), header, sizeof header), static_cast<ssize_t>(sizeof header));
    ::shutdown(rogue.fileno(), SHUT_WR);
    EXPECT_THROW(rogue.recv_bytes(), mproc::EOFError);
    EXPECT_TRUE(wait_logged("got end of file during message"));
    // Lengths over the limit and negative lengths other than -1 are refused at once.
    for (auto [bytes, message] : {std::pair{std::array<unsigned char, 4>{0x7f, 0xff, 0xff, 0xff}, "bad message length 2147483647"},
                                  std::pair{std::array<unsigned char, 4>{0xff, 0xff, 0xff, 0xf0}, "bad message length -16"}}) {
        mproc::Connection hostile = mproc::Client(mproc::UnixAddress(address_), {.authkey = key_});
        ASSERT_EQ(::write(hostile.fileno(), bytes.data(), bytes.size()), 4);
        EXPECT_THROW(hostile.recv_bytes(), mproc::EOFError);
        EXPECT_TRUE(wait_logged(message)) << message;
    }
    d[5] = 6;
    EXPECT_EQ(d.getitem(5), 6);
}

TEST_F(InProcessServer, IdleUnauthenticatedClientsBlockNobody) {
    const int threads_before = mproc::testing::count_entries("/proc/self/task");
    const int fds_before = mproc::testing::count_open_fds();
    std::vector<int> idle;
    for (int i = 0; i < 200; ++i) {
        const int fd = connect_raw(address_);
        if (fd >= 0) idle.push_back(fd);
    }
    ASSERT_GE(idle.size(), 150u);
    const auto start = std::chrono::steady_clock::now();
    mproc::SyncManager latecomer({.address = mproc::UnixAddress(address_), .authkey = key_});
    latecomer.connect();
    auto v = latecomer.Value<int>(7);
    EXPECT_EQ(v.get(), 7);
    // Waiting for an idle peer's handshake deadline (5 s) at each of the 200 would take minutes.
    EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
    // Unauthenticated peers get no thread of their own.
    EXPECT_LT(mproc::testing::count_entries("/proc/self/task") - threads_before, 10);
    // The server's side of them is capped (the listener's pending table), beside the test's own
    // 200 ends.
    EXPECT_LT(mproc::testing::count_open_fds() - fds_before - static_cast<int>(idle.size()), 80);
    for (int fd : idle) ::close(fd);
}

TEST(ManagerFaults, KilledServerIsManagerDiedErrorAtOnce) {
    auto manager = mproc::Manager();
    auto q = manager.Queue<int>();
    auto d = manager.dict<int, int>();
    d[1] = 1;
    std::atomic<bool> died{false};
    std::atomic<pid_t> getter{0};
    std::thread blocked([q, &died, &getter] {
        try {
            q.qsize();  // this thread's connection to the server is made
            getter = mproc::testing::this_thread_id();
            q.get();
        } catch (const mproc::ManagerDiedError&) {
            died = true;
        }
    });
    // The get is in the server once its thread sleeps reading the reply.
    ASSERT_TRUE(mproc::testing::eventually([&getter] { return getter != 0; }));
    EXPECT_TRUE(mproc::testing::wait_until_blocked(getter, mproc::testing::wchan::unix_socket_read));
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(*manager.process()->pid(), SIGKILL), 0);
    blocked.join();
    EXPECT_TRUE(died);
    EXPECT_THROW(d.getitem(1), mproc::ManagerDiedError);
    EXPECT_THROW(d.getitem(1), mproc::EOFError);  // the Python-like base
    // End of file comes at once; a generous bound for a loaded machine (no timeout is involved).
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    manager.shutdown();  // does not hang on a dead server
    EXPECT_EQ(manager.process()->exitcode(), -SIGKILL);
}

TEST(ManagerFaults, ShutdownRightAfterAKillReturns) {
    for (int i = 0; i < 5; ++i) {
        auto manager = mproc::Manager();
        ASSERT_EQ(::kill(*manager.process()->pid(), SIGKILL), 0);
        const auto start = std::chrono::steady_clock::now();
        manager.shutdown();  // the request meets a dead server: end of file, not a wait
        EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
        EXPECT_EQ(manager.process()->exitcode(), -SIGKILL);
    }
}

// Row 26: a server killed on a fixed address can be replaced on the same address at once.
TEST(ManagerFaults, RestartOnTheSameAddressAfterAKill) {
    const mproc::AuthKey key = mproc::AuthKey::random();
    const std::string path = std::get<mproc::UnixAddress>(mproc::connection::arbitrary_address(mproc::Family::af_unix)).path;
    std::vector<mproc::Address> addresses = {mproc::UnixAddress(path)};
    {
        // A TCP port the kernel picked for a first server.
        mproc::SyncManager probe({.address = mproc::TcpAddress{"127.0.0.1", 0}, .authkey = key});
        probe.start();
        addresses.push_back(probe.address());
        ASSERT_EQ(::kill(*probe.process()->pid(), SIGKILL), 0);
        probe.shutdown();
    }
    for (const auto& address : addresses) {
        SCOPED_TRACE(mproc::connection::to_string(address));
        mproc::SyncManager first({.address = address, .authkey = key});
        first.start();
        auto d = first.dict<int, int>();
        d[1] = 1;
        ASSERT_EQ(::kill(*first.process()->pid(), SIGKILL), 0);
        first.join();
        EXPECT_THROW(d.getitem(1), mproc::ManagerDiedError);
        mproc::SyncManager second({.address = address, .authkey = key});
        second.start();
        auto again = second.dict<int, int>();
        again[2] = 2;
        EXPECT_EQ(again.getitem(2), 2);
    }
    ::unlink(path.c_str());
}

void own_a_manager(mproc::Connection& report) {
    auto manager = mproc::Manager();
    report.send(*manager.process()->pid());
    std::this_thread::sleep_for(60s);
}

TEST(ManagerFaults, ServerDiesWithItsOwner) {
    auto [from_child, to_parent] = mproc::Pipe();
    mproc::Process owner(own_a_manager, std::move(to_parent));
    owner.start();
    ASSERT_TRUE(from_child.poll(10s));
    const int server_pid = from_child.recv<int>();
    owner.kill();
    owner.join();
    EXPECT_TRUE(mproc::testing::eventually([server_pid] { return mproc::testing::process_gone(server_pid); }))
        << "the manager server " << server_pid << " outlived its owner by 30 s";
}

// The remote manager: a server program and client programs that share nothing but the port and
// the key.
TEST(ManagerRemote, TwoProgramsOverTcp) {
    const std::string port_file = "/tmp/mproc-manager-port-" + std::to_string(::getpid());
    ::unlink(port_file.c_str());
    const std::string key = "abracadabra";
    std::vector<std::string> server_args = {MPROC_MANAGER_SERVER_PROGRAM, port_file, key};
    std::vector<char*> argv;
    for (auto& a : server_args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t server = 0;
    ASSERT_EQ(::posix_spawn(&server, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    std::string port;
    mproc::testing::eventually([&] {  // starting a program on a loaded machine can take seconds
        std::ifstream(port_file) >> port;
        return !port.empty();
    });
    ASSERT_FALSE(port.empty()) << "the server program did not report its port";
    auto client = [&](const std::string& key_used, const std::string& command) {
        return mproc::testing::run_program({MPROC_MANAGER_CLIENT_PROGRAM, port, key_used, command});
    };
    auto first = client(key, "increment");
    auto second = client(key, "increment");
    EXPECT_EQ(first.exit_status, 0) << first.out << first.err;
    EXPECT_EQ(first.out, "1\n");
    EXPECT_EQ(second.out, "2\n");  // the same shared object, from another program
    auto dict = client(key, "dict");
    EXPECT_EQ(dict.out, "{'remote': 1, 'dict': 2}\n");
    auto intruder = client("wrong key", "increment");
    EXPECT_EQ(intruder.exit_status, 3);
    EXPECT_EQ(intruder.out.rfind("AuthenticationError: ", 0), 0u) << intruder.out;
    auto after = client(key, "increment");
    EXPECT_EQ(after.out, "3\n");  // the server went on
    auto stop = client(key, "shutdown");
    EXPECT_EQ(stop.exit_status, 0);
    int status = -1;
    const bool stopped = mproc::testing::eventually([&] { return ::waitpid(server, &status, WNOHANG) == server; });
    if (!stopped) {
        ::kill(server, SIGKILL);
        ::waitpid(server, &status, 0);
        FAIL() << "the server program did not stop on the shutdown request";
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ::unlink(port_file.c_str());
}

}  // namespace
