// Portable calls and the Process subclass registry: the code that lets targets travel to spawn
// and forkserver children.
#include <map>
#include <mutex>
#include <typeindex>

#include "mproc/detail/process_registry.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/process.hpp"
#include "base/fork_aware_mutex.hpp"
#include "process/process_access.hpp"

namespace mproc::detail {

std::string describe_not_portable(bool callable_ok, const std::type_info& callable, std::size_t bad_argument,
                                  const std::type_info* bad_argument_type) {
    if (!callable_ok) {
        return "the target (" + demangled_name(callable) +
               ") cannot travel to a spawn or forkserver child: only functions and lambdas without captures "
               "can; pass what it captures as arguments, or use the fork start method";
    }
    return "argument " + std::to_string(bad_argument) + " of the target (" +
           (bad_argument_type ? demangled_name(*bad_argument_type) : std::string("?")) +
           ") is not Encodable, so it cannot travel to a spawn or forkserver child (see codec.hpp), "
           "or use the fork start method";
}

void run_portable_call(Decoder& in) {
    auto entry = resolve_function<void(Decoder&)>(in.read<CodeRef>());
    entry(in);
    in.expect_end();
}

namespace {
struct Registry {
    ForkAwareMutex mutex;
    std::map<std::type_index, ProcessTypeEntry> entries;
};
Registry& registry() {
    static auto* r = new Registry;  // never destroyed: registrars run during static initialisation
    return *r;
}
}  // namespace

void register_process_type(const std::type_info& type, ProcessTypeEntry entry) {
    std::lock_guard lock(registry().mutex);
    registry().entries[std::type_index(type)] = entry;
}

const ProcessTypeEntry* find_process_type(const std::type_info& type) {
    std::lock_guard lock(registry().mutex);
    auto it = registry().entries.find(std::type_index(type));
    return it == registry().entries.end() ? nullptr : &it->second;
}

}  // namespace mproc::detail
