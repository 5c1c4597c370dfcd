// libFuzzer target: the authkey challenge (both roles, with and without legacy MD5) fed by a
// hostile peer, or by an honest peer whose bytes are tampered with. Built and run by scripts/fuzz.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    mproc::fuzz::handshake_one_input({data, size});
    return 0;
}
