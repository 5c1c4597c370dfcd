// Must not compile: a shared Value holds its bytes in shared memory, so its type must be
// trivially copyable; std::string owns memory elsewhere. (CPython: _TestValue.test_invalid_typecode,
// where Value('x') raises TypeError at run time; here the refusal comes at compile time.)
#include <string>

#include "mproc/sharedctypes.hpp"

int main() {
    mproc::Value<std::string> v(std::string("text"));
    (void)v;
}
