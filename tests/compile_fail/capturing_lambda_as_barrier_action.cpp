// Must not compile: a managed Barrier's action travels to the manager's server as a code
// reference whatever the start method, so a lambda with captures is refused.
#include "mproc/managers.hpp"

int main() {
    auto manager = mproc::Manager();
    int captured = 1;
    auto barrier = manager.Barrier(2, [captured] { (void)captured; });
    (void)barrier;
}
