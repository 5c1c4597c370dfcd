#pragma once
// A fixed-length list of numbers, booleans, strings, bytes and None in one named segment of shared
// memory (Python's multiprocessing.shared_memory.ShareableList), in Python's binary layout: a
// Python process (3.9+) can attach by name to a list made here and read or change it, and the other
// way round.
//
//   mproc::ShareableList sl({1, 2.5, true, "howdy", mproc::Bytes("raw"), mproc::None{}});
//   sl[0] = 42;                                   // an int where an int was
//   sl[3] = "hi";                                 // a str that fits the slot of "howdy"
//   auto v = sl[1].get();                         // mproc::ShareableValue (a std::variant)
//   std::get<double>(v);                          // 2.5
//   mproc::ShareableList other({.name = sl.name()});   // attach, here or in another process
//
// Values (ShareableValue) are Python's item types: None (std::monostate), int (std::int64_t),
// float (double), bool, str (std::string, UTF-8, as Python encodes it) and bytes (mproc::Bytes).
// Every item has a slot fixed at creation: 8 bytes for a number, a bool or None, and for a bytes
// of n bytes or a str of n characters (code points, as Python counts them) the next multiple of 8
// above n (8 * (n / 8 + 1)), so that the layout is the one Python makes for the same items. Where
// the UTF-8 bytes of a str do not fit that slot (Python would cut them short), the slot is sized
// from the bytes instead (docs/differences.md). Any item can later be replaced
// by a value of any type that fits its slot; a str or bytes longer than the slot is Python's
// ValueError("bytes/str item exceeds available storage"), thrown as mproc::ValueError and nothing
// is written. As in Python, trailing NUL bytes of a str or bytes item are not kept (they are the
// slot's padding), and reads and writes are not locked: a reader may see an item half-written by
// another process; guard the list with a Lock when processes write concurrently.
//
// The layout (native byte order; Python's struct formats without prefix):
//   int64 n | int64 offsets[n + 1] (each slot's start in the data area; offsets[n]: its size)
//   | the data area | char formats[n][8] (each item's struct format, NUL-padded: "q", "d",
//   "xxxxxxx?" for bool, "xxxxxx?x" for None, "<size>s" for str and bytes)
//   | int8 codes[n] (0: a number or bool, 1: str, 2: bytes, 3: None)
// The segment is as long as that, plus, for a segment made by mproc, the trailer that
// SharedMemory keeps after the bytes (shared_memory.hpp), which Python sees as unused bytes.
//
// Errors, as Python's: get() and operator[] reads past either end are IndexError("index out of
// range"), writes IndexError("assignment index out of range"); index() of a value not in the list
// is ValueError("<repr> not in this container"). Attaching to a segment whose bytes are not a list
// (too short, offsets or formats that do not fit) is a DecodeError, never a read outside the
// segment. A str or bytes item of 9,999,992 bytes or more cannot be stored: its format would be
// longer than the 8 bytes the layout has for it (Python asserts); mproc throws ValueError.
//
// Lifetime is the segment's (shared_memory.hpp): the name stays until shm().unlink(), or until
// every process that used it has ended. A ShareableList travels to other processes by name (as
// Python pickles it), under every start method and through queues: the receiver attaches when it
// decodes it, so do not unlink before it has.
#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mproc/shared_memory.hpp"

namespace mproc {

// Python's None (the same type as pool.hpp's None).
using None = std::monostate;

// Python's bytes: raw bytes, told apart from a str.
class Bytes {
public:
    Bytes() = default;
    explicit Bytes(std::string_view data) : data_(data) {}
    explicit Bytes(std::span<const std::byte> data)
        : data_(reinterpret_cast<const char*>(data.data()), data.size()) {}

    // The bytes, in a std::string for convenience.
    const std::string& data() const noexcept { return data_; }
    std::span<const std::byte> bytes() const noexcept { return std::as_bytes(std::span(data_.data(), data_.size())); }
    std::size_t size() const noexcept { return data_.size(); }

    friend bool operator==(const Bytes&, const Bytes&) = default;
    // Python's repr: b'raw\x00'.
    std::string repr() const;
    friend std::ostream& operator<<(std::ostream& os, const Bytes& b) { return os << b.repr(); }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(data_);
    }

private:
    std::string data_;
};

// One item of a ShareableList. Converting constructors pick the alternative as Python would for
// the literal: 1 is an int, 1.0 a float, true a bool, "a" a str.
using ShareableValue = std::variant<None, std::int64_t, double, bool, std::string, Bytes>;

// Python's `a == b` for two items: numbers compare by value across int, float and bool
// (1 == 1.0 == True), NaN equals nothing, str never equals bytes, None equals only None.
bool python_equal(const ShareableValue& a, const ShareableValue& b);
// Python's repr() of an item: 1, 2.5, True, 'text', b'raw', None.
std::string repr(const ShareableValue& value);

struct ShareableListOptions {
    // Creating: the segment's name (empty: a new unique name). Attaching: the name to attach to.
    std::string name{};
    // Whether this handle makes its process a user of the segment (SharedMemoryOptions::track).
    bool track = true;
};

class ShareableList {
public:
    class ItemRef;
    class const_iterator;

    // Closed: no segment. For decoding and assignment.
    ShareableList() = default;
    // A new list holding `sequence` in a new segment (named options.name, or a new unique name).
    // Python's ShareableList(sequence) and ShareableList(sequence, name=...).
    ShareableList(std::initializer_list<ShareableValue> sequence, ShareableListOptions options = {});
    explicit ShareableList(const std::vector<ShareableValue>& sequence, ShareableListOptions options = {});
    // Attaches to the list in the segment options.name (Python's ShareableList(name=...)): OSError
    // ENOENT when there is none, DecodeError when its bytes are not a list, UsageError for an
    // empty name.
    explicit ShareableList(ShareableListOptions options);

    // How many items (Python's len()); fixed at creation.
    std::size_t size() const noexcept { return offsets_.empty() ? 0 : offsets_.size() - 1; }
    // The item at `index` (negative: from the end); IndexError("index out of range").
    ShareableValue get(std::int64_t index) const;
    // Replaces the item at `index` (negative: from the end), with a value of any item type that
    // fits the slot; IndexError("assignment index out of range"), or ValueError("bytes/str item
    // exceeds available storage").
    void set(std::int64_t index, const ShareableValue& value) const;
    // sl[i] reads as a ShareableValue, sl[i] = v writes.
    ItemRef operator[](std::int64_t index) const;

    // How many items equal `value` (Python's ==: 1 counts 1, 1.0 and True).
    std::size_t count(const ShareableValue& value) const;
    // The position of the first item equal to `value`; ValueError("<repr> not in this container").
    std::size_t index(const ShareableValue& value) const;
    // The struct format of every item, joined (Python's format): "qd8sxxxxxxx?".
    std::string format() const;
    // A copy of the items (Python's list(sl)).
    std::vector<ShareableValue> tolist() const;
    const_iterator begin() const;
    const_iterator end() const;

    // The segment (Python's shm): shm().close(), shm().unlink(). Reading or writing items after
    // shm().close() is a UsageError.
    SharedMemory& shm() noexcept { return shm_; }
    const SharedMemory& shm() const noexcept { return shm_; }
    const std::string& name() const noexcept { return shm_.name(); }
    // Python's repr: ShareableList([1, 'a', None], name='psm_1a2b3c4d').
    std::string repr() const;

    // Travels as its segment does (by name); the receiver attaches to the list.
    template <class Archive>
    void save(Archive& ar) const {
        ar(shm_);
    }
    template <class Archive>
    void load(Archive& ar) {
        SharedMemory shm;
        ar(shm);
        *this = ShareableList(std::move(shm));
    }

private:
    // The list in a segment already attached; DecodeError when its bytes are not one.
    explicit ShareableList(SharedMemory attached);
    std::size_t position(std::int64_t index, const char* message) const;
    std::byte* base() const;
    std::string format_of(std::size_t i) const;
    void create(std::span<const ShareableValue> sequence, ShareableListOptions options);

    SharedMemory shm_;
    // Where each slot starts in the data area, and (last) the data area's size: read once, as
    // Python does, so that a later change of the header by someone else cannot move a read out of
    // the segment.
    std::vector<std::int64_t> offsets_;
};

// sl[i]: reads or writes one item.
class ShareableList::ItemRef {
public:
    ItemRef(const ShareableList& list, std::int64_t index) : list_(list), index_(index) {}
    ItemRef& operator=(const ShareableValue& value) {
        list_.set(index_, value);
        return *this;
    }
    ItemRef& operator=(const ItemRef& other) { return *this = other.get(); }
    ShareableValue get() const { return list_.get(index_); }
    operator ShareableValue() const { return get(); }  // NOLINT: implicit, reads like Python
    // Exact comparison (same type and value), as std::variant compares; python_equal() for Python's.
    friend bool operator==(const ItemRef& ref, const ShareableValue& value) { return ref.get() == value; }
    friend std::ostream& operator<<(std::ostream& os, const ItemRef& ref) { return os << mproc::repr(ref.get()); }

private:
    const ShareableList& list_;
    std::int64_t index_;
};

// Reads the items in order, one at a time, as Python's iteration over a ShareableList does.
class ShareableList::const_iterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = ShareableValue;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = ShareableValue;

    const_iterator() = default;
    const_iterator(const ShareableList* list, std::size_t at) : list_(list), at_(at) {}
    ShareableValue operator*() const { return list_->get(static_cast<std::int64_t>(at_)); }
    const_iterator& operator++() {
        ++at_;
        return *this;
    }
    const_iterator operator++(int) {
        const_iterator before = *this;
        ++at_;
        return before;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) { return a.at_ == b.at_; }

private:
    const ShareableList* list_ = nullptr;
    std::size_t at_ = 0;
};

inline ShareableList::ItemRef ShareableList::operator[](std::int64_t index) const { return {*this, index}; }
inline ShareableList::const_iterator ShareableList::begin() const { return {this, 0}; }
inline ShareableList::const_iterator ShareableList::end() const { return {this, size()}; }

}  // namespace mproc
