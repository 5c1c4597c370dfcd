#pragma once
// The references a managed value carries (managers.hpp). A proxy stored in a managed container
// keeps its object alive: the container proxy notes the proxies a value holds while it encodes it
// (NestedProxies) and the container takes a reference to each; a value taken out of the container
// (TakenValue) hands those references over to the proxies decoded from it (ReferenceGrant).
#include <cstdint>
#include <vector>

#include "mproc/detail/manager_types.hpp"

namespace mproc::detail {

// Proxies stored in a managed container keep their objects alive. While a NestedProxies scope
// lives on a thread, every proxy encoded there notes its token in it: a container proxy encodes
// the value it stores inside one, and sends the ids of the proxies of its own server along, for
// the container to hold a reference to each for as long as it holds the value.
class NestedProxies {
public:
    NestedProxies() noexcept : outer_(current()) { current() = this; }
    ~NestedProxies() { current() = outer_; }
    NestedProxies(const NestedProxies&) = delete;
    NestedProxies& operator=(const NestedProxies&) = delete;

    static void note(const ProxyToken& token) {
        if (NestedProxies* scope = current()) scope->tokens_.push_back(token);
    }
    const std::vector<ProxyToken>& tokens() const noexcept { return tokens_; }

private:
    static NestedProxies*& current() noexcept {
        thread_local NestedProxies* scope = nullptr;
        return scope;
    }
    NestedProxies* outer_;
    std::vector<ProxyToken> tokens_;
};

// A value taken out of a container (pop, popitem) and the ids of the objects its proxies refer to,
// whose references the container hands over to the caller with the value.
struct TakenValue {
    Blob value;
    std::vector<std::uint64_t> held;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(value, held);
    }
};

// While alive on a thread, a proxy decoded there whose object id it lists takes over the reference
// the server handed over with the value (a proxy popped from a container) instead of asking for a
// new one. At its end it gives back the references no proxy took (a value that failed to decode).
class ReferenceGrant {
public:
    ReferenceGrant(ProxyToken server, std::vector<std::uint64_t> ids);
    ~ReferenceGrant();
    ReferenceGrant(const ReferenceGrant&) = delete;
    ReferenceGrant& operator=(const ReferenceGrant&) = delete;
    // True when the reference of `token`'s object was handed over; it is taken then, once.
    static bool take(const ProxyToken& token);

private:
    ProxyToken server_;
    std::vector<std::uint64_t> ids_;
    ReferenceGrant* outer_;
};

}  // namespace mproc::detail
