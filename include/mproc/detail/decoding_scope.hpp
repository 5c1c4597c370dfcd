#pragma once
// Arguments that travel to a spawn or forkserver child are decoded into default-constructed
// values (codec.hpp), which load() then overwrites. For most handles a default construction is
// cheap; a Queue's allocates its shared ring (a megabyte, reserved), only to drop it at once. While
// an ArgumentDecoding scope lives on a thread, such handles are default-constructed empty instead.
// The scope covers exactly the decoding of a child's arguments (and of a Process subclass's
// members), never the code that then runs.
namespace mproc::detail {

class ArgumentDecoding {
public:
    ArgumentDecoding() noexcept { ++depth(); }
    ~ArgumentDecoding() { --depth(); }
    ArgumentDecoding(const ArgumentDecoding&) = delete;
    ArgumentDecoding& operator=(const ArgumentDecoding&) = delete;

    static bool active() noexcept { return depth() > 0; }

private:
    static int& depth() noexcept {
        thread_local int value = 0;
        return value;
    }
};

}  // namespace mproc::detail
