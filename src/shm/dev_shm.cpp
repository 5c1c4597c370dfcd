// The named files of /dev/shm (dev_shm.hpp).
#include "shm/dev_shm.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "base/identity.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

std::uint64_t random_u64(const char* what) {
    std::uint64_t value = 0;
    while (::getrandom(&value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) {
        if (errno != EINTR) throw OSError(std::string(what) + " (getrandom)", errno);
    }
    return value;
}

bool is_buffer_name(std::string_view name) noexcept {
    const std::string_view prefix = kBufferNamePrefix;
    if (name.size() != prefix.size() + kBufferNameDigits || !name.starts_with(prefix)) return false;
    for (const char c : name.substr(prefix.size())) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

std::vector<std::string> dev_shm_names(bool (*wanted)(const char* name)) {
    std::vector<std::string> names;
    DIR* dir = ::opendir(kDevShmDirectory);
    if (dir == nullptr) return names;
    while (dirent* e = ::readdir(dir)) {
        if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
        if (wanted(e->d_name)) names.emplace_back(e->d_name);
    }
    ::closedir(dir);
    return names;
}

FileInTheMaking::FileInTheMaking(std::size_t size, std::string what) : what_(std::move(what)) {
    const ProcessIdentity self = self_identity();
    char temporary[96];
    std::snprintf(temporary, sizeof temporary, "%s%d-%llu-%016llx", kTemporaryPrefix, self.pid,
                  static_cast<unsigned long long>(self.start_time),
                  static_cast<unsigned long long>(random_u64(what_.c_str())));
    temporary_path_ = dev_shm_path(temporary);
    fd_.reset(::open(temporary_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd_) throw OSError(what_, errno);
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) fail(errno, "ftruncate");
    if (const int rc = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(size)); rc != 0) fail(rc, "posix_fallocate");
    try {
        mapping_ = MappedRegion::map_shared(fd_.get(), size, (what_ + " (mmap)").c_str());
    } catch (const OSError& e) {
        fail(e.code().value(), "mmap");
    }
}

FileInTheMaking::~FileInTheMaking() {
    if (!published_ && !temporary_path_.empty()) ::unlink(temporary_path_.c_str());
}

void FileInTheMaking::fail(int error, const std::string& step) {
    mapping_.reset();
    fd_.reset();
    ::unlink(temporary_path_.c_str());
    temporary_path_.clear();
    throw OSError(step.empty() ? what_ : what_ + " (" + step + ")", error);
}

MappedRegion FileInTheMaking::publish(const std::string& name) {
    if (::link(temporary_path_.c_str(), dev_shm_path(name).c_str()) != 0) fail(errno, "");
    ::unlink(temporary_path_.c_str());
    published_ = true;
    fd_.reset();
    return std::move(mapping_);
}

}  // namespace mproc::detail
