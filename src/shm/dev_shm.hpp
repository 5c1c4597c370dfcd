#pragma once
// What the named files of /dev/shm share: SharedMemory's segments (shared_memory.cpp) and the
// shared buffers (shared_buffer.cpp). Their paths, their random names and identities, how a file
// is made (under a temporary name, complete, then linked under its own, so that nobody ever sees a
// half-made file by name) and how the sweeps list the directory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/mapping.hpp"
#include "base/unique_fd.hpp"

namespace mproc::detail {

inline constexpr const char* kDevShmDirectory = "/dev/shm/";
// The temporary names: ".mproc-new-<pid>-<start time>-<random>". SharedMemory's sweep removes
// such a file once its creator has died (a creation abandoned half-way).
inline constexpr const char* kTemporaryPrefix = ".mproc-new-";

inline std::string dev_shm_path(const std::string& name) { return kDevShmDirectory + name; }

// The shared buffers' names, "psb_<16 hex digits>" (shared_buffer.cpp). SharedMemory refuses them
// and its sweep skips them, so that neither kind reads the other's files as its own: a trailer in
// the last bytes of a buffer's data, a header in the first page of a segment's.
inline constexpr const char* kBufferNamePrefix = "psb_";
inline constexpr std::size_t kBufferNameDigits = 16;
bool is_buffer_name(std::string_view name) noexcept;

// Random bits, for a name or an identity. OSError "<what> (getrandom)" on failure.
std::uint64_t random_u64(const char* what);

// The names of the regular files (or entries of unknown type) in /dev/shm that `wanted` accepts.
std::vector<std::string> dev_shm_names(bool (*wanted)(const char* name));

// A file being made: created under a temporary name, `size` bytes long, every page reserved
// (posix_fallocate: a full /dev/shm fails here, not as a SIGBUS in whoever first writes to a page
// that cannot be had), and mapped. publish() links it under its name; a file never published is
// removed. Failures are OSError("<what> (<step>)", error).
class FileInTheMaking {
public:
    FileInTheMaking(std::size_t size, std::string what);
    FileInTheMaking(const FileInTheMaking&) = delete;
    FileInTheMaking& operator=(const FileInTheMaking&) = delete;
    ~FileInTheMaking();

    std::byte* bytes() const noexcept { return mapping_.bytes(); }
    // Removes the temporary file and throws OSError("<what> (<step>)", error); `step` empty: the
    // operation as a whole.
    [[noreturn]] void fail(int error, const std::string& step);
    // Links the file under `name` (failing rather than replacing a name that exists: OSError
    // "<what>" with EEXIST) and returns its mapping.
    MappedRegion publish(const std::string& name);

private:
    std::string what_;
    std::string temporary_path_;
    UniqueFd fd_;
    MappedRegion mapping_;
    bool published_ = false;
};

}  // namespace mproc::detail
