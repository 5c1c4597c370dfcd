// libFuzzer target: the message framing of Connection (recv_bytes, recv_bytes_into, recv<T>)
// reading whatever a peer wrote. Built and run by scripts/fuzz.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    mproc::fuzz::frame_reader_one_input({data, size});
    return 0;
}
