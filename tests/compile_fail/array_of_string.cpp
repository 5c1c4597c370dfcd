// Must not compile: as for a Value, the elements of a shared Array live in shared memory, so their
// type must be trivially copyable. (CPython: _TestArray.test_invalid_typecode, at run time there.)
#include <string>

#include "mproc/sharedctypes.hpp"

int main() {
    mproc::Array<std::string> a(std::size_t{3});
    (void)a;
}
