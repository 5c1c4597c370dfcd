// The C++ side of shareable_list_interop.py: a ShareableList made here that Python attaches to,
// and a Python-made one that this attaches to.
//
//   shareable_list_interop_peer create
//       makes a list of VALUES, prints "NAME <name> <format>", waits for a line on stdin (Python
//       has changed the items), prints "OK" if they are CHANGED (else "MISMATCH <repr>"), unlinks
//       the segment and exits 0 (1 on a mismatch).
//   shareable_list_interop_peer attach <name> full|empty
//       attaches to Python's list, prints "REPR <repr>" and "FORMAT <format>", checks that the
//       items are VALUES (or none), sets them to CHANGED, tries a str too long for its slot and
//       prints "ERROR <what()>", then exits 0 (2 if the items were not VALUES).
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/shareable_list.hpp"

using mproc::Bytes;
using mproc::None;
using mproc::ShareableList;
using mproc::ShareableValue;

namespace {

// The same lists as shareable_list_interop.py's.
const std::vector<ShareableValue> kValues{
    42, -7, 2.5, -273.154, true, false, None{}, "howdy", "", "exactly8", Bytes("HoWdY"), Bytes(""),
    Bytes(std::string_view("\0\1bin", 5)), std::int64_t{1} << 62, 1e300};

const std::vector<ShareableValue> kChanged{-1,
                                           "str",
                                           None{},
                                           7,
                                           1.25,
                                           "xyz",
                                           Bytes("bytes"),
                                           "\xc3\xb1" "and\xc3\xba",  // 'ñandú': 7 bytes of UTF-8
                                           "EXACTLY8",
                                           "sixteen bytes!!!",
                                           true,
                                           Bytes(std::string_view("\0\0x", 3)),
                                           std::numeric_limits<std::int64_t>::min(),
                                           HUGE_VAL,
                                           false};

std::string repr_of(const std::vector<ShareableValue>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + mproc::repr(items[i]);
    return out + "]";
}

int create() {
    ShareableList sl(kValues);
    std::cout << "NAME " << sl.name() << ' ' << sl.format() << std::endl;
    std::string line;
    std::getline(std::cin, line);
    const auto items = sl.tolist();
    const bool same = items == kChanged;
    std::cout << (same ? std::string("OK") : "MISMATCH " + repr_of(items)) << std::endl;
    sl.shm().close();
    sl.shm().unlink();
    return same ? 0 : 1;
}

int attach(const std::string& name, bool full) {
    ShareableList sl({.name = name});
    std::cout << "REPR " << sl.repr() << std::endl;
    std::cout << "FORMAT " << sl.format() << std::endl;
    if (sl.tolist() != (full ? kValues : std::vector<ShareableValue>{})) return 2;
    if (!full) return 0;
    for (std::size_t i = 0; i < kChanged.size(); ++i) sl[static_cast<std::int64_t>(i)] = kChanged[i];
    try {
        sl[7] = "far too long";
        std::cout << "ERROR none" << std::endl;
    } catch (const mproc::ValueError& e) {
        std::cout << "ERROR " << e.what() << std::endl;
    }
    sl.shm().close();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1 && args[0] == "create") return create();
    if (args.size() == 3 && args[0] == "attach") return attach(args[1], args[2] == "full");
    std::cerr << "usage: shareable_list_interop_peer create | attach NAME full|empty\n";
    return 64;
}
