// Must compile: under fork anything goes (the counterpart of the two failing cases, which shows
// that they fail for the reason tested and not for a broken setup).
#include "mproc/context.hpp"

void target(int*) {}

int main() {
    int value = 1;
    auto p = mproc::fork_context.Process([value] { (void)value; });
    auto q = mproc::fork_context.Process(target, &value);
    (void)p;
    (void)q;
}
