#pragma once
// How a proxy reads like a container (managers.hpp): d[key] and l[i] as element references that
// call the server when assigned or read, and input iterators that step through a remote sequence
// one call per element.
#include <cstddef>
#include <iterator>
#include <optional>
#include <utility>

namespace mproc::detail {

// d[key] = value and V v = d[key] (Python's __setitem__ and __getitem__).
template <class Owner, class Key, class V>
class ItemRef {
public:
    ItemRef(const Owner& owner, Key key) : owner_(owner), key_(std::move(key)) {}
    ItemRef& operator=(const V& value) {
        owner_.set(key_, value);
        return *this;
    }
    operator V() const { return owner_.getitem(key_); }  // NOLINT: implicit, reads like Python
    V get() const { return owner_.getitem(key_); }

private:
    const Owner& owner_;
    Key key_;
};

// An input iterator that reads a remote sequence one element per call, as Python's iterators do:
// nothing is read before the first dereference or comparison, and each element when it is
// reached, so that changes made meanwhile are seen. `Step` holds the proxy and where the walk is;
// its operator() returns the next element, or nothing at the end, and its start(), if it has one,
// runs when the iterator is made (Python's iter()).
template <class Step>
class StepIterator {
public:
    using value_type = typename Step::value_type;
    using difference_type = std::ptrdiff_t;

    explicit StepIterator(Step step) : step_(std::move(step)) {
        if constexpr (requires { step_.start(); }) step_.start();
    }
    const value_type& operator*() const {
        fetch();
        return *current_;
    }
    const value_type* operator->() const { return &**this; }
    StepIterator& operator++() {
        fetch();
        fetched_ = false;
        return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const StepIterator& it, std::default_sentinel_t) {
        it.fetch();
        return !it.current_;
    }

private:
    void fetch() const {
        if (fetched_) return;
        current_ = step_();
        fetched_ = true;
    }
    mutable Step step_;
    mutable std::optional<value_type> current_;
    mutable bool fetched_ = false;
};

// A range over a StepIterator: each begin() starts a new walk.
template <class Step>
struct StepRange {
    Step step;
    StepIterator<Step> begin() const { return StepIterator<Step>(step); }
    std::default_sentinel_t end() const { return {}; }
};

}  // namespace mproc::detail
