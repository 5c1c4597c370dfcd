// Must not compile: a lambda with captures cannot travel to a spawn child, and spawn_context knows
// its start method at compile time.
#include "mproc/context.hpp"

int main() {
    int captured = 1;
    auto p = mproc::spawn_context.Process([captured] { (void)captured; });
    (void)p;
}
