#include "process/child_request.hpp"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <typeinfo>

#include "base/descriptor_transfer.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/logging.hpp"
#include "process/process_access.hpp"
#include "process/runtime.hpp"

namespace mproc::detail {
namespace {

// A target decoded lazily in the child, so that a failure is reported by the bootstrap like any
// exception of the target (Process <name>: ..., exit code 1).
class DecodedTarget final : public Target {
public:
    explicit DecodedTarget(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
    void invoke() override {
        Decoder in(bytes_);
        run_portable_call(in);
    }
    bool portable() const noexcept override { return true; }
    void encode_portable(Encoder& out) const override { out.write_bytes(bytes_); }

private:
    std::vector<std::byte> bytes_;
};

const ProcessTypeEntry* subclass_entry(const Process& self) {
    if (typeid(self) == typeid(Process)) return nullptr;
    const ProcessTypeEntry* entry = find_process_type(typeid(self));
    if (entry == nullptr) {
        const std::string name = unqualified_type_name(typeid(self));
        throw UsageError(name + " is a Process subclass that cannot travel to a spawn or forkserver child: add "
                                "MPROC_REGISTER_PROCESS(" + name + ") after the class, or use the fork start method");
    }
    return entry;
}

}  // namespace

std::vector<std::byte> encode_child_request(const Process& self, const ProcessState& state,
                                            const std::string& parent_name, std::vector<int>& descriptors) {
    OutgoingDescriptors collecting(descriptors);
    ChildRequest request;
    request.name = state.display_name();
    request.type_name = state.type_name;
    request.identity = state.identity;
    request.daemon = state.daemon;
    if (state.authkey) {
        auto bytes = state.authkey->bytes();
        request.authkey.assign(bytes.begin(), bytes.end());
    }
    request.start_method = static_cast<int>(state.method.value_or(StartMethod::fork));
    request.die_with_parent = state.die_with_parent;
    request.parent_name = parent_name;
    request.parent_pid = ::getpid();
    request.log_level = static_cast<int>(get_logger().level());
    request.log_to_stderr = get_logger().has_stderr_handler();
    request.chosen_start_method = get_start_method(true);
    if (const ProcessTypeEntry* entry = subclass_entry(self)) {
        request.subclass_factory = code_ref_of_function(entry->create);
        Encoder out(request.subclass_state);
        entry->encode(self, out);
    }
    if (state.target) {
        Encoder out(request.target);
        state.target->encode_portable(out);
    }
    request.descriptor_count = static_cast<int>(descriptors.size());
    return dumps(request);
}

void run_child_request(std::span<const std::byte> bytes, int os_parent_pid, int parent_pidfd, int exit_status_fd,
                       std::vector<int> descriptors) {
    ChildRequest request;
    try {
        request = loads<ChildRequest>(bytes);
        if (request.descriptor_count != static_cast<int>(descriptors.size()))
            throw DecodeError("the request announces " + std::to_string(request.descriptor_count) +
                              " descriptors and " + std::to_string(descriptors.size()) + " came with it");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc: a child could not decode its start request: %s\n", e.what());
        std::fflush(stderr);
        ::_exit(1);
    }
    set_incoming_descriptors(std::move(descriptors));

    auto state = std::make_shared<ProcessState>();
    state->name = request.name;
    state->type_name = request.type_name;
    state->identity = request.identity;
    state->daemon = request.daemon;
    state->authkey = AuthKey(std::span<const std::byte>(request.authkey));
    state->method = static_cast<StartMethod>(request.start_method);
    state->die_with_parent = request.die_with_parent;
    state->parent_pid = request.parent_pid;
    if (!request.target.empty()) state->target = std::make_shared<DecodedTarget>(std::move(request.target));

    if (request.chosen_start_method) set_start_method(*request.chosen_start_method, true);
    Logger& log = get_logger();
    log.set_level(static_cast<LogLevel>(request.log_level));
    if (request.log_to_stderr) log.add_stderr_handler();

    if (os_parent_pid == kCreatorIsParent) os_parent_pid = request.parent_pid;
    ChildOrigin origin{request.parent_name, request.parent_pid, os_parent_pid, parent_pidfd, exit_status_fd};
    Runtime::get().become_child(state, origin);

    std::unique_ptr<Process> self;
    try {
        if (request.subclass_factory) {
            auto factory = resolve_function<Process*(Decoder&)>(*request.subclass_factory);
            Decoder in(request.subclass_state);
            self.reset(factory(in));
            in.expect_end();
        } else {
            self = std::make_unique<Process>();
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "Process %s:\nmproc: the child could not rebuild its Process object: %s\n",
                     request.name.c_str(), e.what());
        std::fflush(stderr);
        ::_exit(1);
    }
    ProcessAccess::replace_state(*self, state);
    child_bootstrap(*self, state, origin);
}

}  // namespace mproc::detail
