#pragma once
// What managed_pool.hpp's PoolProxy needs inline: the job kinds, a task's call site as it travels
// to the server, the input read whole and cut into encoded chunks, and a result joined from the
// parts the server holds.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/code_ref.hpp"
#include "mproc/detail/manager_types.hpp"
#include "mproc/errors.hpp"
#include "mproc/pool.hpp"

namespace mproc::detail {

// How a job's results are taken: all at once (apply, map) or chunk by chunk, in submission order
// or as they finish (imap, imap_unordered).
enum class PoolJobKind : std::uint8_t { apply = 0, map = 1, imap = 2, imap_unordered = 3 };

// A task's code as it travels to the server: the worker entry and, for a function pointer, the
// function (pool.hpp's CallSite, as code references), with the sender's program, which must be
// the server's (executable_identity).
struct WireCallSite {
    CodeRef entry;
    std::optional<CodeRef> function;
    std::string program;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(entry, function, program);
    }
};

inline WireCallSite wire_call_site(const CallSite& site) {
    WireCallSite out{code_ref_of(site.entry), std::nullopt, executable_identity()};
    if (site.function != nullptr) out.function = code_ref_of(site.function);
    return out;
}

// The input of a map, read whole (Python's map makes a list of it first).
template <class T, class Range>
std::vector<T> gather_items(Range&& items) {
    std::vector<T> all;
    if constexpr (std::ranges::sized_range<Range>) all.reserve(std::ranges::size(items));
    for (auto&& item : items) all.emplace_back(item);
    return all;
}

// The inputs split into encoded chunks of `chunksize` items, as a worker's map entry reads them.
template <class T>
Blobs encode_chunks(const std::vector<T>& all, std::size_t chunksize) {
    if (chunksize == 0) throw ValueError("Chunksize must be 1+, not 0");
    Blobs chunks;
    for (std::size_t begin = 0; begin < all.size(); begin += chunksize) {
        const auto first = all.begin() + static_cast<std::ptrdiff_t>(begin);
        const auto last = all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), begin + chunksize));
        chunks.push_back(dumps(std::vector<T>(first, last)));
    }
    return chunks;
}

// pool.hpp's task check for a starmap item: a tuple or a pair of the arguments.
template <class F, class Tuple>
consteval void check_star_task() {
    []<std::size_t... I>(std::index_sequence<I...>) {
        check_task<F, std::tuple_element_t<I, Tuple>...>();
    }(std::make_index_sequence<std::tuple_size_v<Tuple>>{});
}

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

// A result from the encoded parts the server holds: one part (apply), or one vector per chunk
// (map), joined. An apply's vector result is one part, so joining it is the same.
template <class T>
T join_parts(const Blobs& parts) {
    if constexpr (is_vector<T>::value) {
        T out;
        for (const auto& part : parts) {
            T chunk = loads<T>(part);
            out.insert(out.end(), std::make_move_iterator(chunk.begin()), std::make_move_iterator(chunk.end()));
        }
        return out;
    } else {
        if (parts.size() != 1) throw DecodeError("a pool result of one part was expected");
        return loads<T>(parts.front());
    }
}

}  // namespace mproc::detail
