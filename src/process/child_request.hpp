#pragma once
// The start request of a spawn or forkserver child: who it is (Python's preparation data) and
// what it runs. Encoded with the codec in the parent, decoded by the child itself.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mproc/detail/code_ref.hpp"
#include "mproc/process.hpp"
#include "process/process_state.hpp"

namespace mproc::detail {

struct ChildRequest {
    // Who the child is.
    std::string name;
    std::string type_name;
    std::vector<int> identity;
    bool daemon = false;
    std::vector<std::byte> authkey;
    int start_method = 0;
    bool die_with_parent = false;
    std::string parent_name;
    int parent_pid = 0;
    int log_level = 0;
    bool log_to_stderr = false;
    // The parent's set_start_method choice, if it made one: the child's get_start_method() gives
    // the same answer (Python sends its start method with a spawned child's preparation data).
    std::optional<std::string> chosen_start_method;
    // What it runs: a registered subclass (its factory and members), and/or a portable call.
    std::optional<CodeRef> subclass_factory;
    std::vector<std::byte> subclass_state;
    std::vector<std::byte> target;
    // How many descriptors travel with the request (detail/descriptors.hpp).
    int descriptor_count = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, type_name, identity, daemon, authkey, start_method, die_with_parent, parent_name, parent_pid,
           log_level, log_to_stderr, chosen_start_method, subclass_factory, subclass_state, target, descriptor_count);
    }
};

// The request for starting `self` (whose state is `state`); the descriptors that must travel with
// it are added to `descriptors`. Throws UsageError, naming what cannot travel, when the target, an
// argument or the subclass cannot.
std::vector<std::byte> encode_child_request(const Process& self, const ProcessState& state,
                                            const std::string& parent_name, std::vector<int>& descriptors);

// In a spawn or forkserver child: become the child the request describes and run it.
// `os_parent_pid` is the process that created this one (the parent, or the fork server);
// `parent_pidfd`, when not -1, refers to the logical parent; `exit_status_fd`, when not -1, is
// where the child writes its exit code before it exits (a fork server child's status socket). Never
// returns.
inline constexpr int kCreatorIsParent = 0;  // os_parent_pid: the logical parent created this process
// `descriptors` are those that came with the request, in order.
[[noreturn]] void run_child_request(std::span<const std::byte> request, int os_parent_pid, int parent_pidfd,
                                    int exit_status_fd, std::vector<int> descriptors);

// The fork server's loop (forkserver.cpp), on the channel descriptor. Never returns.
[[noreturn]] void run_forkserver(int channel);

}  // namespace mproc::detail
