// A remote manager's server, as a program of its own (Python's QueueManager server idiom):
//   manager_remote_server <port file> <authkey>
// serves a shared Counter and a shared queue on 127.0.0.1 (a port the kernel picks, written to the
// port file once listening) until a client asks it to shut down.
#include <cstdio>
#include <fstream>
#include <string>
#include <variant>

#include "mproc/managers.hpp"

class Counter {
public:
    int increment(int by) { return value_ += by; }
    int get() const { return value_; }

private:
    int value_ = 0;
};

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <port file> <authkey>\n", argv[0]);
        return 2;
    }
    mproc::BaseManager manager({.address = mproc::TcpAddress{"127.0.0.1", 0}, .authkey = mproc::AuthKey(argv[2])});
    manager.register_type<Counter>("get_counter", {.shared = true})
        .method<&Counter::increment>("increment")
        .method<&Counter::get>("get");
    mproc::Server server = manager.get_server();
    {
        const std::string tmp = std::string(argv[1]) + ".tmp";
        std::ofstream(tmp) << std::get<mproc::TcpAddress>(server.address()).port << '\n';
        std::rename(tmp.c_str(), argv[1]);
    }
    server.serve_forever();
    return 0;
}
