// Code references: (loaded object, offset) pairs found with dl_iterate_phdr, which lists every
// object with its load bias and program headers, so that only executable PT_LOAD segments count.
#include "mproc/detail/code_ref.hpp"

#include <link.h>
#include <sys/stat.h>

#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "mproc/errors.hpp"

namespace mproc::detail {
namespace {

struct Search {
    // in
    std::uintptr_t address = 0;
    const char* object = nullptr;  // when resolving: the object to find ("" = main executable)
    std::uint64_t offset = 0;
    // out
    bool found_object = false;
    bool executable = false;
    std::string object_name;
    std::uintptr_t bias = 0;
};

bool in_executable_segment(const dl_phdr_info* info, std::uintptr_t address) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
        if (address >= start && address < start + ph.p_memsz) return true;
    }
    return false;
}

// The first object dl_iterate_phdr reports is the main executable; its name is empty.
int find_by_address(dl_phdr_info* info, size_t, void* data) {
    auto* s = static_cast<Search*>(data);
    if (!in_executable_segment(info, s->address)) return 0;
    s->found_object = true;
    s->executable = true;
    s->object_name = info->dlpi_name ? info->dlpi_name : "";
    s->bias = info->dlpi_addr;
    return 1;
}

int find_by_name(dl_phdr_info* info, size_t, void* data) {
    auto* s = static_cast<Search*>(data);
    const char* name = info->dlpi_name ? info->dlpi_name : "";
    if (std::strcmp(name, s->object) != 0) return 0;
    s->found_object = true;
    s->bias = info->dlpi_addr;
    s->address = info->dlpi_addr + s->offset;
    s->executable = in_executable_segment(info, s->address);
    return 1;
}

}  // namespace

CodeRef code_ref_of(const void* address) {
    Search s;
    s.address = reinterpret_cast<std::uintptr_t>(address);
    dl_iterate_phdr(find_by_address, &s);
    if (!s.found_object)
        throw UsageError("this code cannot travel to another process: its address is in no loaded object");
    return CodeRef{s.object_name, s.address - s.bias};
}

const void* resolve_code_ref(const CodeRef& ref) {
    Search s;
    s.object = ref.object.c_str();
    s.offset = ref.offset;
    dl_iterate_phdr(find_by_name, &s);
    if (!s.found_object)
        throw DecodeError("code reference to '" + ref.object + "', which is not loaded in this process");
    if (!s.executable)
        throw DecodeError("code reference to offset " + std::to_string(ref.offset) + " of '" +
                          (ref.object.empty() ? std::string("the main executable") : ref.object) +
                          "' is not in executable code");
    return reinterpret_cast<const void*>(s.address);
}

const std::string& executable_identity() {
    static const std::string identity = [] {
        struct stat info {};
        if (::stat("/proc/self/exe", &info) != 0) return std::string("unknown");
        return fmt::format("{}:{}:{}:{}.{}", info.st_dev, info.st_ino, info.st_size, info.st_mtim.tv_sec,
                           info.st_mtim.tv_nsec);
    }();
    return identity;
}

}  // namespace mproc::detail
