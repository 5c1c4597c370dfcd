// The build-ids of the program and its shared objects, read from their loaded ELF notes
// (NT_GNU_BUILD_ID), which the linker writes into every Debian binary.
#include <elf.h>
#include <link.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "mpi/runtime.hpp"

namespace mproc::mpi::detail {
namespace {

std::string hex(const unsigned char* bytes, std::size_t count) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(count * 2);
    for (std::size_t i = 0; i < count; ++i) {
        out.push_back(kDigits[bytes[i] >> 4]);
        out.push_back(kDigits[bytes[i] & 0xf]);
    }
    return out;
}

std::string build_id_of(const dl_phdr_info* info) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& segment = info->dlpi_phdr[i];
        if (segment.p_type != PT_NOTE) continue;
        const auto* at = reinterpret_cast<const unsigned char*>(info->dlpi_addr + segment.p_vaddr);
        const auto* end = at + segment.p_memsz;
        while (at + sizeof(ElfW(Nhdr)) <= end) {
            ElfW(Nhdr) note;
            std::memcpy(&note, at, sizeof note);
            const auto* name = at + sizeof note;
            const auto* desc = name + ((note.n_namesz + 3) & ~3u);
            const auto* next = desc + ((note.n_descsz + 3) & ~3u);
            if (next > end) break;
            if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0)
                return hex(desc, note.n_descsz);
            at = next;
        }
    }
    return "no-build-id";
}

}  // namespace

std::string program_fingerprint() {
    std::string lines;
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            std::string name = info->dlpi_name != nullptr ? info->dlpi_name : "";
            // The kernel's vDSO is not a file of the program; its build-id follows the kernel.
            if (name.starts_with("linux-vdso") || name.starts_with("linux-gate")) return 0;
            if (name.empty()) name = "the program";
            *static_cast<std::string*>(out) += name + " " + build_id_of(info) + "\n";
            return 0;
        },
        &lines);
    return lines;
}

}  // namespace mproc::mpi::detail
