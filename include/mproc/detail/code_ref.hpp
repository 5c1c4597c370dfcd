#pragma once
// A reference to code that can travel to another process running the same program: the loaded
// object that holds the code (the main executable, or a shared library by path) and the offset
// from that object's load address. Address-space layout randomization gives every process its own
// load addresses; the offsets are the same, so the receiver rebases them.
//
// Only channels mproc created or authenticated carry code references; resolving one still checks
// that the address lands in an executable segment of an object loaded in this process.
#include <cstdint>
#include <string>

namespace mproc::detail {

struct CodeRef {
    std::string object;       // "" for the main executable, else the shared object's path
    std::uint64_t offset = 0; // from the object's load bias

    template <class Archive>
    void serialize(Archive& ar) {
        ar(object, offset);
    }
};

// The reference of a code address in this process. Throws UsageError when the address is in no
// loaded object's executable segment (for example, code generated at run time).
CodeRef code_ref_of(const void* address);

// The address of `ref` in this process. Throws DecodeError when the object is not loaded here or
// the address is not in one of its executable segments.
const void* resolve_code_ref(const CodeRef& ref);

// Which program this process runs: the device, inode, size and modification time of its
// executable. Code references sent to a manager's server (a managed Barrier's action, a managed
// Pool's tasks) come with the sender's, and the server runs them only when it is its own.
const std::string& executable_identity();

template <class Function>
CodeRef code_ref_of_function(Function* function) {
    return code_ref_of(reinterpret_cast<const void*>(function));
}

template <class Function>
Function* resolve_function(const CodeRef& ref) {
    return reinterpret_cast<Function*>(const_cast<void*>(resolve_code_ref(ref)));
}

}  // namespace mproc::detail
