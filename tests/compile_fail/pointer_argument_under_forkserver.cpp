// Must not compile: a pointer argument cannot travel to a forkserver child.
#include "mproc/context.hpp"

void target(int*) {}

int main() {
    int value = 1;
    auto p = mproc::forkserver_context.Process(target, &value);
    (void)p;
}
