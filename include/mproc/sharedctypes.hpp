#pragma once
// Shared values and arrays (Python's multiprocessing.sharedctypes): Value, Array (with a lock),
// RawValue, RawArray (without).
//
//   mproc::Value<long> counter(0);
//   auto work = [](mproc::Value<long> c) {
//       for (int i = 0; i < 1000; ++i) {
//           std::scoped_lock guard(c.get_lock());
//           c.value() += 1;          // read-modify-write: hold the lock, as in Python
//       }
//   };
//   mproc::Process p(work, counter);
//
// Like the primitives of synchronize.hpp, each object is a handle to shared memory: copies refer
// to the same value, a copy passed to a Process is the same value in the child (inherited under
// fork, sent as a descriptor under spawn and forkserver), and the memory lives as long as any
// process holds a handle. Sending one through a Queue or a Connection is a UsageError (Python
// too refuses: "objects should only be shared between processes through inheritance"); send the
// value itself instead.
//
// How they differ from Python's:
//  - The type is a template argument instead of a type code: Value<int> for Value('i'),
//    Array<double> for Array('d'), any trivially copyable struct for a ctypes Structure. Types that
//    own memory elsewhere (std::string, std::vector, pointers) cannot be shared this way: their
//    bytes would point into one process's heap. That is a compile-time error.
//  - Python's `v.value` (which takes the lock for each read and each write) is load() and
//    store(). value() is a reference to the shared object without any locking, for use while
//    holding get_lock() — the way to do `v.value += 1` correctly in Python too.
//  - The lock is a template argument: Value<T> uses a new RLock (Python's default);
//    Value<T, mproc::Lock> a Lock; both constructors accept an existing lock to share
//    (Python's lock=<lock>). Python's lock=False is RawValue / RawArray.
//  - Value and Array are Lockable over their lock (Python's Synchronized acquire/release and
//    context manager), so `std::scoped_lock guard(v);` works.
//  - load() and store() take the lock; if its owner died they throw OwnerDiedError without doing
//    their work, with the lock held by the exception (errors.hpp).
//
// Memory ordering: accesses through value() / operator[] are plain, not atomic: between processes
// as between threads, two of them conflict unless ordered by the lock (or another primitive).
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "mproc/detail/shared_block.hpp"
#include "mproc/detail/shared_values.hpp"
#include "mproc/errors.hpp"
#include "mproc/synchronize.hpp"

namespace mproc {

template <class T, class Mutex>
class Value;
template <class T, class Mutex>
class Array;

// A T in shared memory, without a lock (Python's RawValue).
template <class T>
class RawValue {
    static_assert(detail::check_shareable<T>());

public:
    RawValue() : RawValue(T{}) {}
    explicit RawValue(const T& initial)
        : block_(detail::allocate_shared_block(detail::BlockKind::value, sizeof(T), alignof(T))) {
        ::new (static_cast<void*>(block_.payload())) T(initial);
    }

    // The shared object.
    T& value() const noexcept { return *std::launder(reinterpret_cast<T*>(block_.payload())); }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "a shared value");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = detail::load_shared_block(ar, detail::BlockKind::value);
        if (detail::shared_block_size(block) != sizeof(T))
            detail::throw_shared_size_mismatch(detail::shared_block_size(block), sizeof(T));
        block_ = std::move(block);
    }

private:
    detail::SharedBlock block_;
};

namespace detail {

// What Value and Array share (Python's SynchronizedBase): the lock, and its operations forwarded,
// so that the object itself is Lockable (std::scoped_lock guard(value)).
template <class Mutex>
class SynchronizedBase {
    static_assert(std::is_same_v<Mutex, Lock> || std::is_same_v<Mutex, RLock>,
                  "a Value's or an Array's lock is an mproc::Lock or an mproc::RLock");

public:
    Mutex& get_lock() const noexcept { return lock_; }

    void lock() const { lock_.lock(); }
    bool try_lock() const { return lock_.try_lock(); }
    void unlock() const { lock_.unlock(); }
    bool acquire(bool block = true) const { return lock_.acquire(block); }
    template <class Rep, class Period>
    bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) const {
        return lock_.acquire(block, timeout);
    }
    void release() const { lock_.release(); }

protected:
    SynchronizedBase() = default;
    explicit SynchronizedBase(Mutex lock) : lock_(std::move(lock)) {}

    mutable Mutex lock_;
};

}  // namespace detail

// A T in shared memory with a lock (Python's Value / Synchronized).
template <class T, class Mutex = RLock>
class Value : public detail::SynchronizedBase<Mutex> {
    using detail::SynchronizedBase<Mutex>::lock_;

public:
    Value() : Value(T{}) {}
    explicit Value(const T& initial) : obj_(initial) {}
    // Shares `lock` with other objects (Python's Value(..., lock=lock)).
    Value(const T& initial, Mutex lock) : detail::SynchronizedBase<Mutex>(std::move(lock)), obj_(initial) {}

    // Python's v.value: one read or one write under the lock.
    T load() const {
        std::scoped_lock guard(lock_);
        return obj_.value();
    }
    void store(const T& value) const {
        std::scoped_lock guard(lock_);
        obj_.value() = value;
    }

    // The shared object, without locking: hold get_lock() around anything more than one access.
    T& value() const noexcept { return obj_.value(); }

    // The unsynchronized object (Python's get_obj()): the same memory, without the lock.
    RawValue<T> get_obj() const { return obj_; }


    template <class Archive>
    void save(Archive& ar) const {
        ar(obj_, lock_);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(obj_, lock_);
    }

private:
    RawValue<T> obj_;
};

// `size` T's in shared memory, without a lock (Python's RawArray). A contiguous range: data(),
// size(), begin(), end(), operator[] (unchecked, as std::vector's), span(). As with std::vector,
// RawArray<int>(4) is four zeros and RawArray<int>{4} is one 4.
template <class T>
class RawArray {
    static_assert(detail::check_shareable<T>());

public:
    RawArray() : RawArray(std::size_t{0}) {}
    // `size` value-initialized elements (zero for numbers, as Python's Array('i', 10)).
    explicit RawArray(std::size_t size) : RawArray(size, nullptr) {
        if constexpr (!std::is_trivially_default_constructible_v<T>)
            for (std::size_t i = 0; i < size; ++i) ::new (static_cast<void*>(data() + i)) T{};
    }
    RawArray(std::initializer_list<T> values) : RawArray(std::span<const T>(values.begin(), values.size())) {}
    // A copy of `values` (Python's Array('i', [1, 2, 3])).
    template <std::ranges::sized_range R>
        requires(std::convertible_to<std::ranges::range_reference_t<R>, T> && !std::is_same_v<std::decay_t<R>, RawArray>)
    explicit RawArray(const R& values) : RawArray(static_cast<std::size_t>(std::ranges::size(values)), nullptr) {
        std::size_t i = 0;
        for (auto&& v : values) ::new (static_cast<void*>(data() + i++)) T(v);
    }

    T* data() const noexcept { return std::launder(reinterpret_cast<T*>(block_.payload())); }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) const noexcept { return data()[i]; }
    T* begin() const noexcept { return data(); }
    T* end() const noexcept { return data() + size_; }
    std::span<T> span() const noexcept { return {data(), size_}; }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "a shared array");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = detail::load_shared_block(ar, detail::BlockKind::value);
        const std::uint64_t bytes = detail::shared_block_size(block);
        if (bytes % sizeof(T) != 0) detail::throw_shared_size_mismatch(bytes, sizeof(T));
        block_ = std::move(block);
        size_ = static_cast<std::size_t>(bytes / sizeof(T));
    }

private:
    RawArray(std::size_t size, std::nullptr_t)
        : block_(detail::allocate_shared_block(detail::BlockKind::value, checked_bytes(size), alignof(T))),
          size_(size) {}
    static std::size_t checked_bytes(std::size_t size) {
        if (size > (std::size_t{1} << 46) / sizeof(T)) detail::throw_array_too_large(size, sizeof(T));
        return size * sizeof(T);
    }

    detail::SharedBlock block_;
    std::size_t size_ = 0;
};

// `size` T's in shared memory with a lock (Python's Array / SynchronizedArray).
template <class T, class Mutex = RLock>
class Array : public detail::SynchronizedBase<Mutex> {
    using detail::SynchronizedBase<Mutex>::lock_;

public:
    Array() : Array(std::size_t{0}) {}
    explicit Array(std::size_t size) : obj_(size) {}
    Array(std::size_t size, Mutex lock) : detail::SynchronizedBase<Mutex>(std::move(lock)), obj_(size) {}
    Array(std::initializer_list<T> values) : obj_(values) {}
    template <std::ranges::sized_range R>
        requires(std::convertible_to<std::ranges::range_reference_t<R>, T> && !std::is_same_v<std::decay_t<R>, Array>)
    explicit Array(const R& values) : obj_(values) {}
    template <std::ranges::sized_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, T>
    Array(const R& values, Mutex lock) : detail::SynchronizedBase<Mutex>(std::move(lock)), obj_(values) {}

    // One element, read or written under the lock (Python's a[i]); UsageError out of range.
    T load(std::size_t i) const {
        check(i);
        std::scoped_lock guard(lock_);
        return obj_[i];
    }
    void store(std::size_t i, const T& value) const {
        check(i);
        std::scoped_lock guard(lock_);
        obj_[i] = value;
    }

    // The elements without locking: hold get_lock() while using them.
    T& operator[](std::size_t i) const noexcept { return obj_[i]; }
    T* data() const noexcept { return obj_.data(); }
    std::size_t size() const noexcept { return obj_.size(); }
    bool empty() const noexcept { return obj_.empty(); }
    T* begin() const noexcept { return obj_.begin(); }
    T* end() const noexcept { return obj_.end(); }
    std::span<T> span() const noexcept { return obj_.span(); }

    RawArray<T> get_obj() const { return obj_; }


    // Non-members, so that the codec's load(archive) and the element's load(i) do not meet.
    template <class Archive>
    friend void save(Archive& ar, const Array& array) {
        ar(array.obj_, array.lock_);
    }
    template <class Archive>
    friend void load(Archive& ar, Array& array) {
        ar(array.obj_, array.lock_);
    }

private:
    void check(std::size_t i) const {
        if (i >= obj_.size()) detail::throw_index_error(i, obj_.size());
    }

    RawArray<T> obj_;
};

}  // namespace mproc
