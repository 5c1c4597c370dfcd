// A program that forgets mproc::init: spawn and forkserver must refuse to start children from it
// with a message that says what to do, instead of executing it anew as a child that never
// becomes one.
#include <cstdio>

#include "mproc/context.hpp"
#include "mproc/process.hpp"

void noop() {}

int main() {
    for (const char* method : {"spawn", "forkserver"}) {
        try {
            auto p = mproc::get_context(method).Process(noop);
            p.start();
            p.join();
            std::printf("%s: started\n", method);
        } catch (const mproc::UsageError& e) {
            std::printf("%s: %s\n", method, e.what());
        }
    }
    return 0;
}
