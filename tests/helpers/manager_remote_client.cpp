// A remote manager's client, unrelated to the server's process:
//   manager_remote_client <port> <authkey> increment|dict|shutdown
// increment: prints the shared counter's value after adding 1; dict: creates a dict on the
// server, fills and prints it; shutdown: asks the server to stop. Errors print their type and
// message and exit with 3.
#include <cstdio>
#include <iostream>
#include <string>

#include "mproc/managers.hpp"

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s <port> <authkey> increment|dict|shutdown\n", argv[0]);
        return 2;
    }
    const std::string command = argv[3];
    mproc::SyncManager manager({.address = mproc::TcpAddress{"127.0.0.1", static_cast<std::uint16_t>(std::stoi(argv[1]))},
                                .authkey = mproc::AuthKey(argv[2])});
    try {
        manager.connect();
        if (command == "increment") {
            mproc::Proxy counter = manager.create("get_counter");
            std::cout << counter.call<int>("increment", 1) << '\n';
        } else if (command == "dict") {
            auto d = manager.dict<std::string, int>();
            d["remote"] = 1;
            d["dict"] = 2;
            std::cout << d << '\n';
        } else if (command == "shutdown") {
            manager.shutdown();
        }
    } catch (const mproc::AuthenticationError& e) {
        std::cout << "AuthenticationError: " << e.what() << '\n';
        return 3;
    } catch (const std::exception& e) {
        std::cout << "error: " << e.what() << '\n';
        return 3;
    }
    return 0;
}
