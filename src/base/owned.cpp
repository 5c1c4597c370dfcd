// The owners of descriptors and mappings (unique_fd.hpp, mapping.hpp): the one place mproc calls
// close(2) and munmap(2).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "base/mapping.hpp"
#include "base/unique_fd.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

void close_fd(int fd) noexcept {
    if (fd >= 0) static_cast<void>(::close(fd));  // never retried: see unique_fd.hpp
}

UniqueFd duplicate_fd(int fd, const char* what) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) throw OSError(what, errno);
    return UniqueFd(copy);
}

MappedRegion MappedRegion::map(std::size_t size, int protection, int flags, int fd, off_t offset, const char* what) {
    void* address = ::mmap(nullptr, size, protection, flags, fd, offset);
    if (address == MAP_FAILED) throw OSError(what, errno);
    return MappedRegion(address, size);
}

MappedRegion MappedRegion::map_shared(int fd, std::size_t size, const char* what) {
    return map(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, what);
}

void MappedRegion::reset() noexcept {
    if (address_ != nullptr) static_cast<void>(::munmap(address_, size_));
    address_ = nullptr;
    size_ = 0;
}

}  // namespace mproc::detail
