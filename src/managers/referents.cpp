// The objects a SyncManager's server owns. Values are kept as their encodings: the server never
// needs to know a value's type, only to compare encodings (dict keys, list.index) and hand them
// back. Each object has its own mutex, since every client is served by a thread of its own.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "base/deadline.hpp"
#include "managers/pool_referent.hpp"
#include "managers/protocol.hpp"
#include "mproc/detail/manager_references.hpp"
#include "mproc/detail/target.hpp"
#include "managers/server_state.hpp"

namespace mproc::detail {
namespace {

template <class T>
T arg(const Blobs& args, std::size_t index) {
    if (index >= args.size()) throw ServerError{"UsageError", fmt::format("missing argument {}", index + 1)};
    return loads<T>(args[index]);
}

const Blob& raw_arg(const Blobs& args, std::size_t index) {
    if (index >= args.size()) throw ServerError{"UsageError", fmt::format("missing argument {}", index + 1)};
    return args[index];
}

[[noreturn]] void not_exposed(std::string_view method, std::string_view type_id) {
    throw ServerError{"AttributeError", fmt::format("method '{}' of '{}' object is not exposed", method, type_id)};
}

std::string key_of(const Blob& blob) { return std::string(reinterpret_cast<const char*>(blob.data()), blob.size()); }

Blob none() { return {}; }

// Waits on `cv` until `ready()`, forever (timeout_ns < 0), not at all (0) or at most timeout_ns.
template <class Lock, class Ready>
bool wait_until_ready(std::condition_variable& cv, Lock& lock, std::int64_t timeout_ns, Ready ready) {
    if (timeout_ns < 0) {
        cv.wait(lock, ready);
        return true;
    }
    return cv.wait_until(lock, Deadline::after(std::chrono::nanoseconds(timeout_ns)).steady_time(), ready);
}

// Python's index rules: negative counts from the end; out of range is an error.
std::size_t checked_index(std::int64_t index, std::size_t size, const char* message) {
    if (index < 0) index += static_cast<std::int64_t>(size);
    if (index < 0 || static_cast<std::size_t>(index) >= size) throw ServerError{"IndexError", message};
    return static_cast<std::size_t>(index);
}

// Python's slice bound clamping.
std::size_t clamp_bound(std::int64_t bound, std::size_t size) {
    if (bound < 0) bound += static_cast<std::int64_t>(size);
    return static_cast<std::size_t>(std::clamp<std::int64_t>(bound, 0, static_cast<std::int64_t>(size)));
}

// A value a container stores: its encoding, and the references its proxies hold on other objects
// (none for a value without proxies). Copies of it share them (a list repeated by *=).
struct Element {
    Blob bytes;
    std::shared_ptr<const StoredReferences> held;

    Element() = default;
    Element(Blob value, std::shared_ptr<const StoredReferences> references = nullptr)  // NOLINT: implicit
        : bytes(std::move(value)), held(std::move(references)) {}
    friend bool operator==(const Element& element, const Blob& value) { return element.bytes == value; }

    // Encoded as its bytes alone: a sequence of elements reads back as Blobs.
    template <class Archive>
    void save(Archive& ar) const {
        ar(bytes);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(bytes);
        held.reset();
    }
};

// The references for the objects `ids` names, held for a value being stored.
std::shared_ptr<const StoredReferences> hold(std::vector<std::uint64_t> ids, const Caller& caller) {
    if (ids.empty()) return nullptr;
    if (caller.server == nullptr) throw ServerError{"UsageError", "this call cannot hold objects"};
    return std::make_shared<const StoredReferences>(*caller.server, std::move(ids));
}

// The ids a client sends after a stored value (args[index], absent when the value holds no proxy
// of this server), held.
std::shared_ptr<const StoredReferences> held_arg(const Blobs& args, std::size_t index, const Caller& caller) {
    if (index >= args.size()) return nullptr;
    return hold(arg<std::vector<std::uint64_t>>(args, index), caller);
}

// The same for `count` values stored at once (extend, update): one list of ids per value.
std::vector<std::shared_ptr<const StoredReferences>> held_each(const Blobs& args, std::size_t index, std::size_t count,
                                                             const Caller& caller) {
    std::vector<std::shared_ptr<const StoredReferences>> out(count);
    if (index >= args.size()) return out;
    auto lists = arg<std::vector<std::vector<std::uint64_t>>>(args, index);
    if (lists.size() != count) throw ServerError{"UsageError", "one list of held objects per value expected"};
    for (std::size_t i = 0; i < count; ++i) out[i] = hold(std::move(lists[i]), caller);
    return out;
}

// A value taken out of its container for the caller (pop), with a reference to each object its
// proxies refer to, which the caller's proxies take over.
TakenValue take_out(Element& element) {
    TakenValue out{std::move(element.bytes), {}};
    if (element.held) {
        element.held->hand_over();
        out.held = element.held->ids();
    }
    return out;
}

// A fingerprint of a list's contents, to see whether it changed between two calls (sort).
std::uint64_t fingerprint_of(const std::vector<Element>& items) {
    std::uint64_t hash = 14695981039346656037ull;  // FNV-1a
    auto mix = [&hash](std::byte b) { hash = (hash ^ static_cast<std::uint64_t>(b)) * 1099511628211ull; };
    for (const auto& item : items) {
        const std::uint64_t size = item.bytes.size();
        for (std::size_t i = 0; i < sizeof size; ++i) mix(static_cast<std::byte>(size >> (8 * i)));
        for (std::byte b : item.bytes) mix(b);
    }
    return hash;
}

class DictReferent final : public Referent {
public:
    Blob call(std::string_view m, const Blobs& args, const Caller& caller) override {
        std::lock_guard lock(mutex_);
        if (m == "get") {
            auto it = index_.find(key_of(raw_arg(args, 0)));
            return dumps(it == index_.end() ? std::optional<Blob>() : std::optional<Blob>(it->second->second.bytes));
        }
        if (m == "__setitem__") {
            put(raw_arg(args, 0), Element(raw_arg(args, 1), held_arg(args, 2, caller)));
            return none();
        }
        if (m == "__delitem__" || m == "pop") {
            auto it = index_.find(key_of(raw_arg(args, 0)));
            const bool found = it != index_.end();
            std::optional<TakenValue> value;
            if (found) {
                if (m == "pop") value = take_out(it->second->second);
                items_.erase(it->second);
                index_.erase(it);
                ++version_;
            }
            return m == "pop" ? dumps(value) : dumps(found);
        }
        if (m == "popitem") {
            if (items_.empty()) throw ServerError{"KeyError", "popitem(): dictionary is empty"};
            auto last = std::prev(items_.end());
            Blob out = dumps(std::pair<Blob, TakenValue>(last->first, take_out(last->second)));
            index_.erase(key_of(last->first));
            items_.erase(last);
            ++version_;
            return out;
        }
        if (m == "setdefault") {
            auto it = index_.find(key_of(raw_arg(args, 0)));
            if (it != index_.end()) return it->second->second.bytes;
            put(raw_arg(args, 0), Element(raw_arg(args, 1), held_arg(args, 2, caller)));
            return raw_arg(args, 1);
        }
        if (m == "keys" || m == "values") {
            Blobs out;
            out.reserve(items_.size());
            for (const auto& [key, value] : items_) out.push_back(m == "keys" ? key : value.bytes);
            return dumps(out);
        }
        if (m == "items") return dumps(std::vector<std::pair<Blob, Element>>(items_.begin(), items_.end()));
        if (m == "update") {
            auto pairs = arg<std::vector<std::pair<Blob, Blob>>>(args, 0);
            auto held = held_each(args, 1, pairs.size(), caller);
            for (std::size_t i = 0; i < pairs.size(); ++i)
                put(pairs[i].first, Element(std::move(pairs[i].second), std::move(held[i])));
            return none();
        }
        if (m == "__contains__") return dumps(index_.contains(key_of(raw_arg(args, 0))));
        if (m == "__len__") return dumps(static_cast<std::uint64_t>(items_.size()));
        if (m == "clear") {
            if (!items_.empty()) ++version_;
            items_.clear();
            index_.clear();
            return none();
        }
        if (m == "__iter_step__") return dumps(iter_step(args, caller));
        not_exposed(m, "dict");
    }

private:
    using Items = std::list<std::pair<Blob, Element>>;

    void put(const Blob& key, Element value) {
        auto [it, inserted] = index_.try_emplace(key_of(key));
        if (inserted) {
            items_.emplace_back(key, std::move(value));
            it->second = std::prev(items_.end());
            ++version_;
        } else {
            it->second->second = std::move(value);
        }
    }

    // Python's dict iterator, one step a call: (position, size, version, with value). Position
    // kNone begins an iteration, answering the size and version the next steps pass back; a step
    // fails as Python's next() does when the dict changed size (or keys) since.
    DictStep iter_step(const Blobs& args, const Caller& caller) {
        constexpr std::uint64_t kNone = ~std::uint64_t{0};
        const auto position = arg<std::uint64_t>(args, 0);
        const auto size = arg<std::uint64_t>(args, 1);
        const auto version = arg<std::uint64_t>(args, 2);
        const bool with_value = arg<bool>(args, 3);
        if (position != kNone && size != items_.size())
            throw ServerError{"UsageError", "dictionary changed size during iteration"};
        if (position != kNone && version != version_)
            throw ServerError{"UsageError", "dictionary keys changed during iteration"};
        DictStep step{items_.size(), version_, std::nullopt, std::nullopt};
        if (position >= items_.size()) {
            cursors_.erase(caller.connection);
            return step;
        }
        // Where this connection's walk was: valid while no key was added or removed since.
        if (cursors_.size() > kMaxCursors && !cursors_.contains(caller.connection)) cursors_.clear();
        Cursor& cursor = cursors_[caller.connection];
        if (cursor.version != version_ || cursor.position > position) cursor = Cursor{version_, 0, items_.begin()};
        for (; cursor.position < position; ++cursor.position) ++cursor.at;
        step.key = cursor.at->first;
        if (with_value) step.value = cursor.at->second.bytes;
        return step;
    }

    struct Cursor {
        std::uint64_t version = ~std::uint64_t{0};
        std::uint64_t position = 0;
        Items::iterator at;
    };
    static constexpr std::size_t kMaxCursors = 64;

    std::mutex mutex_;
    Items items_;  // in insertion order, as Python's dict
    std::unordered_map<std::string, Items::iterator> index_;
    std::uint64_t version_ = 0;  // counts the keys added and removed
    std::unordered_map<std::uint64_t, Cursor> cursors_;  // by connection
};

class ListReferent final : public Referent {
public:
    ListReferent() = default;
    // Python's manager Array: a fixed number of elements, only len/get/set (and a copy).
    ListReferent(std::size_t size, const Blob& initial) : items_(size, initial), fixed_(true) {}

    Blob call(std::string_view m, const Blobs& args, const Caller& caller) override {
        std::lock_guard lock(mutex_);
        if (m == "__getitem__")
            return items_[checked_index(arg<std::int64_t>(args, 0), items_.size(), fixed_ ? "array index out of range" : "list index out of range")].bytes;
        if (m == "__setitem__") {
            const auto at = checked_index(arg<std::int64_t>(args, 0), items_.size(),
                                          fixed_ ? "array assignment index out of range" : "list assignment index out of range");
            items_[at] = Element(raw_arg(args, 1), held_arg(args, 2, caller));
            return none();
        }
        if (m == "__len__") return dumps(static_cast<std::uint64_t>(items_.size()));
        if (m == "copy") return dumps(items_);
        if (fixed_) not_exposed(m, "Array");
        if (m == "append") {
            items_.emplace_back(raw_arg(args, 0), held_arg(args, 1, caller));
            return none();
        }
        if (m == "extend") {
            auto values = arg<Blobs>(args, 0);
            auto held = held_each(args, 1, values.size(), caller);
            for (std::size_t i = 0; i < values.size(); ++i) items_.emplace_back(std::move(values[i]), std::move(held[i]));
            return none();
        }
        if (m == "index" || m == "remove") {
            const Blob& value = raw_arg(args, 0);
            auto it = std::find(items_.begin(), items_.end(), value);
            if (it == items_.end())
                throw ServerError{"ValueError", m == "index" ? "value is not in list" : "list.remove(x): x not in list"};
            if (m == "index") return dumps(static_cast<std::uint64_t>(it - items_.begin()));
            items_.erase(it);
            return none();
        }
        if (m == "insert") {
            const auto at = clamp_bound(arg<std::int64_t>(args, 0), items_.size());
            items_.insert(items_.begin() + static_cast<std::ptrdiff_t>(at), Element(raw_arg(args, 1), held_arg(args, 2, caller)));
            return none();
        }
        if (m == "pop") {
            if (items_.empty()) throw ServerError{"IndexError", "pop from empty list"};
            const auto at = checked_index(arg<std::int64_t>(args, 0), items_.size(), "pop index out of range");
            TakenValue out = take_out(items_[at]);
            items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(at));
            return dumps(out);
        }
        if (m == "__delitem__") {
            const auto at = checked_index(arg<std::int64_t>(args, 0), items_.size(), "list assignment index out of range");
            items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(at));
            return none();
        }
        if (m == "count")
            return dumps(static_cast<std::uint64_t>(std::count(items_.begin(), items_.end(), raw_arg(args, 0))));
        if (m == "__contains__")
            return dumps(std::find(items_.begin(), items_.end(), raw_arg(args, 0)) != items_.end());
        if (m == "reverse") {
            std::reverse(items_.begin(), items_.end());
            return none();
        }
        if (m == "clear") {
            items_.clear();
            return none();
        }
        if (m == "slice") {
            const auto start = clamp_bound(arg<std::int64_t>(args, 0), items_.size());
            const auto stop = clamp_bound(arg<std::int64_t>(args, 1), items_.size());
            return dumps(start < stop ? std::vector<Element>(items_.begin() + static_cast<std::ptrdiff_t>(start),
                                                             items_.begin() + static_cast<std::ptrdiff_t>(stop))
                                      : std::vector<Element>());
        }
        if (m == "__imul__") {
            const auto times = arg<std::int64_t>(args, 0);
            if (times <= 0 || items_.empty()) {
                items_.clear();
                return none();
            }
            if (static_cast<std::uint64_t>(times) > kMaxElements / items_.size())
                throw ServerError{"MemoryError", "the list would be too long"};
            const std::size_t once = items_.size();
            items_.reserve(once * static_cast<std::size_t>(times));
            for (std::int64_t i = 1; i < times; ++i)
                for (std::size_t j = 0; j < once; ++j) items_.push_back(items_[j]);
            return none();
        }
        // sort, in two calls: the elements and a fingerprint of them, then the order the client
        // sorted them in, applied only when the list has not changed in between.
        if (m == "__sort_snapshot__") {
            Blob out;
            Encoder snapshot(out);
            snapshot.write(fingerprint_of(items_));
            snapshot.write(items_);
            return out;
        }
        if (m == "__permute__") {
            if (arg<std::uint64_t>(args, 0) != fingerprint_of(items_)) return dumps(false);
            const auto order = arg<std::vector<std::uint64_t>>(args, 1);
            std::vector<bool> seen(items_.size());
            if (order.size() != items_.size()) throw ServerError{"ValueError", "not a permutation of the list"};
            for (const auto index : order) {
                if (index >= items_.size() || seen[index]) throw ServerError{"ValueError", "not a permutation of the list"};
                seen[index] = true;
            }
            std::vector<Element> sorted;
            sorted.reserve(items_.size());
            for (const auto index : order) sorted.push_back(std::move(items_[index]));
            items_ = std::move(sorted);
            return dumps(true);
        }
        not_exposed(m, "list");
    }

private:
    static constexpr std::size_t kMaxElements = std::size_t{1} << 32;
    std::mutex mutex_;
    std::vector<Element> items_;
    bool fixed_ = false;
};

class NamespaceReferent final : public Referent {
public:
    Blob call(std::string_view m, const Blobs& args, const Caller& caller) override {
        std::lock_guard lock(mutex_);
        if (m == "__getattr__") {
            auto it = find(arg<std::string>(args, 0));
            return dumps(std::pair<std::string, Blob>(it->fingerprint, it->value.bytes));
        }
        // (name, type fingerprint, the value's repr, the value[, the objects it holds])
        if (m == "__setattr__") {
            auto name = arg<std::string>(args, 0);
            auto fingerprint = arg<std::string>(args, 1);
            auto repr = arg<std::string>(args, 2);
            Element value(raw_arg(args, 3), held_arg(args, 4, caller));
            auto it = std::find_if(attributes_.begin(), attributes_.end(), [&](const auto& a) { return a.name == name; });
            if (it == attributes_.end()) it = attributes_.insert(attributes_.end(), Attribute{name, {}, {}, {}});
            it->fingerprint = std::move(fingerprint);
            it->repr = std::move(repr);
            it->value = std::move(value);
            return none();
        }
        if (m == "__delattr__") {
            attributes_.erase(find(arg<std::string>(args, 0)));
            return none();
        }
        if (m == "__contains__") {
            auto name = arg<std::string>(args, 0);
            return dumps(std::any_of(attributes_.begin(), attributes_.end(), [&](const auto& a) { return a.name == name; }));
        }
        if (m == "names") {
            std::vector<std::string> names;
            for (const auto& a : attributes_) names.push_back(a.name);
            return dumps(names);
        }
        // Python's Namespace.__repr__: Namespace(a=1, b='x'), the name=value texts sorted.
        if (m == "__repr__") {
            std::vector<std::string> shown;
            for (const auto& a : attributes_) shown.push_back(a.name + "=" + a.repr);
            std::sort(shown.begin(), shown.end());
            std::string out = "Namespace(";
            for (std::size_t i = 0; i < shown.size(); ++i) out += (i == 0 ? "" : ", ") + shown[i];
            return dumps(out + ")");
        }
        not_exposed(m, "Namespace");
    }

private:
    struct Attribute {
        std::string name;
        std::string fingerprint;
        std::string repr;  // Python's repr of the value, made by the proxy that set it
        Element value;
    };
    std::vector<Attribute>::iterator find(const std::string& name) {
        auto it = std::find_if(attributes_.begin(), attributes_.end(), [&](const auto& a) { return a.name == name; });
        if (it == attributes_.end())
            throw ServerError{"AttributeError", fmt::format("'Namespace' object has no attribute '{}'", name)};
        return it;
    }

    std::mutex mutex_;
    std::vector<Attribute> attributes_;  // few, in the order first set
};

class ValueReferent final : public Referent {
public:
    explicit ValueReferent(Blob initial) : value_(std::move(initial)) {}
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        std::lock_guard lock(mutex_);
        if (m == "get") return value_;
        if (m == "set") {
            value_ = raw_arg(args, 0);
            return none();
        }
        not_exposed(m, "Value");
    }

private:
    std::mutex mutex_;
    Blob value_;
};

// queue.Queue, and with `joinable` the task accounting of a JoinableQueue.
class QueueReferent final : public Referent {
public:
    QueueReferent(std::size_t maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {}
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        std::unique_lock lock(mutex_);
        if (m == "put") {
            const auto timeout = arg<std::int64_t>(args, 1);
            if (!wait_until_ready(not_full_, lock, timeout, [&] { return maxsize_ == 0 || items_.size() < maxsize_; }))
                throw ServerError{"Full", "queue is full"};
            items_.push_back(raw_arg(args, 0));
            ++unfinished_;
            not_empty_.notify_one();
            return none();
        }
        if (m == "get") {
            if (!wait_until_ready(not_empty_, lock, arg<std::int64_t>(args, 0), [&] { return !items_.empty(); }))
                throw ServerError{"Empty", "queue is empty"};
            Blob out = std::move(items_.front());
            items_.pop_front();
            not_full_.notify_one();
            return out;
        }
        if (m == "qsize") return dumps(static_cast<std::uint64_t>(items_.size()));
        if (m == "full") return dumps(maxsize_ > 0 && items_.size() >= maxsize_);
        if (joinable_ && m == "task_done") {
            if (unfinished_ == 0) throw ServerError{"ValueError", "task_done() called too many times"};
            if (--unfinished_ == 0) all_done_.notify_all();
            return none();
        }
        if (joinable_ && m == "join") {
            all_done_.wait(lock, [&] { return unfinished_ == 0; });
            return none();
        }
        not_exposed(m, joinable_ ? "JoinableQueue" : "Queue");
    }

private:
    std::mutex mutex_;
    std::condition_variable not_empty_, not_full_, all_done_;
    std::deque<Blob> items_;
    std::size_t maxsize_;
    std::uint64_t unfinished_ = 0;
    bool joinable_;
};

// threading.Lock (released by anyone), threading.RLock (owned by the caller's connection), and
// with `condition` the RLock-based threading.Condition, all on one mutex.
class LockReferent final : public Referent {
public:
    LockReferent(bool recursive, bool condition) : recursive_(recursive), condition_(condition) {}
    Blob call(std::string_view m, const Blobs& args, const Caller& caller) override {
        std::unique_lock lock(mutex_);
        if (m == "acquire") return dumps(acquire(lock, caller, arg<std::int64_t>(args, 0)));
        if (m == "release") {
            release(caller);
            return none();
        }
        if (!condition_) not_exposed(m, recursive_ ? "RLock" : "Lock");
        if (m == "wait") {
            if (owner_ != caller.connection || count_ == 0)
                throw ServerError{"UsageError", "cannot wait on un-acquired lock"};
            const int saved = count_;
            count_ = 0;
            owner_ = 0;
            lock_free_.notify_one();
            auto ticket = std::make_shared<bool>(false);
            waiters_.push_back(ticket);
            const bool woken = wait_until_ready(notified_, lock, arg<std::int64_t>(args, 0), [&] { return *ticket; });
            if (!woken) std::erase(waiters_, ticket);
            lock_free_.wait(lock, [&] { return count_ == 0; });
            owner_ = caller.connection;
            count_ = saved;
            return dumps(woken);
        }
        if (m == "notify" || m == "notify_all") {
            if (owner_ != caller.connection || count_ == 0)
                throw ServerError{"UsageError", "cannot notify on un-acquired lock"};
            auto n = m == "notify" ? arg<std::int64_t>(args, 0) : static_cast<std::int64_t>(waiters_.size());
            while (n-- > 0 && !waiters_.empty()) {
                *waiters_.front() = true;
                waiters_.pop_front();
            }
            notified_.notify_all();
            return none();
        }
        not_exposed(m, "Condition");
    }

private:
    bool acquire(std::unique_lock<std::mutex>& lock, const Caller& caller, std::int64_t timeout) {
        if (recursive_ && count_ > 0 && owner_ == caller.connection) {
            ++count_;
            return true;
        }
        if (!wait_until_ready(lock_free_, lock, timeout, [&] { return count_ == 0; })) return false;
        owner_ = caller.connection;
        count_ = 1;
        return true;
    }
    void release(const Caller& caller) {
        if (recursive_) {
            if (count_ == 0 || owner_ != caller.connection)
                throw ServerError{"UsageError", "cannot release un-acquired lock"};
            if (--count_ > 0) return;
        } else if (count_ == 0) {
            throw ServerError{"UsageError", "release unlocked lock"};
        } else {
            count_ = 0;
        }
        owner_ = 0;
        lock_free_.notify_one();
    }

    std::mutex mutex_;
    std::condition_variable lock_free_, notified_;
    std::uint64_t owner_ = 0;
    int count_ = 0;
    std::deque<std::shared_ptr<bool>> waiters_;  // a Condition's waiters, first come first woken
    bool recursive_, condition_;
};

class SemaphoreReferent final : public Referent {
public:
    SemaphoreReferent(std::int64_t value, bool bounded) : value_(value), bound_(value), bounded_(bounded) {
        if (value < 0) throw ServerError{"ValueError", "semaphore initial value must be >= 0"};
    }
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        std::unique_lock lock(mutex_);
        if (m == "acquire") {
            if (!wait_until_ready(available_, lock, arg<std::int64_t>(args, 0), [&] { return value_ > 0; }))
                return dumps(false);
            --value_;
            return dumps(true);
        }
        if (m == "release") {
            if (bounded_ && value_ >= bound_) throw ServerError{"ValueError", "Semaphore released too many times"};
            ++value_;
            available_.notify_one();
            return none();
        }
        not_exposed(m, bounded_ ? "BoundedSemaphore" : "Semaphore");
    }

private:
    std::mutex mutex_;
    std::condition_variable available_;
    std::int64_t value_, bound_;
    bool bounded_;
};

class EventReferent final : public Referent {
public:
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        std::unique_lock lock(mutex_);
        if (m == "is_set") return dumps(flag_);
        if (m == "set") {
            flag_ = true;
            changed_.notify_all();
            return none();
        }
        if (m == "clear") {
            flag_ = false;
            return none();
        }
        if (m == "wait") return dumps(wait_until_ready(changed_, lock, arg<std::int64_t>(args, 0), [&] { return flag_; }));
        not_exposed(m, "Event");
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool flag_ = false;
};

// A managed Barrier's action: a portable call (detail/target.hpp) decoded and run anew at each
// cycle, so that a proxy among its arguments is a fresh client of this server each time; the
// objects its proxies refer to are kept alive for as long as the barrier holds the call.
class BarrierAction {
public:
    BarrierAction(ServerState& server, const Blobs& args, std::size_t first) {
        encoded_ = arg<std::vector<std::byte>>(args, first);
        if (encoded_.empty()) return;
        check_same_program(arg<std::string>(args, first + 1), "a managed Barrier's action");
        Decoder in(encoded_);
        resolve_code_ref(in.read<CodeRef>());  // DecodeError now rather than at the first cycle
        auto held = arg<std::vector<std::uint64_t>>(args, first + 2);
        if (!held.empty()) references_ = std::make_unique<StoredReferences>(server, std::move(held));
    }
    explicit operator bool() const noexcept { return !encoded_.empty(); }
    void operator()() const {
        Decoder in(encoded_);
        run_portable_call(in);
    }

private:
    std::vector<std::byte> encoded_;
    std::unique_ptr<StoredReferences> references_;
};

// threading.Barrier: each round is a generation; breaking it (abort, reset, a timeout, an action
// that throws) fails the parties waiting in that round.
class BarrierReferent final : public Referent {
public:
    // Arguments: parties, the default timeout (ns, -1: none), then the action's (BarrierAction).
    BarrierReferent(ServerState& server, const Blobs& args)
        : parties_(arg<std::int64_t>(args, 0)), default_timeout_(arg<std::int64_t>(args, 1)), action_(server, args, 2) {
        if (parties_ < 1) throw ServerError{"ValueError", "parties must be > 0"};
    }
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        std::unique_lock lock(mutex_);
        if (m == "wait") {
            if (broken_) throw ServerError{"BrokenBarrierError", "the barrier is broken"};
            auto round = current_;
            const std::int64_t index = count_++;
            if (count_ == parties_) {
                // The last party runs the action before anyone is released, as Python's does.
                if (action_) {
                    try {
                        action_();
                    } catch (...) {
                        break_round();
                        throw;
                    }
                }
                round->done = true;
                next_round();
                changed_.notify_all();
                return dumps(index);
            }
            const std::int64_t timeout = args.empty() ? default_timeout_ : arg<std::int64_t>(args, 0);
            if (!wait_until_ready(changed_, lock, timeout, [&] { return round->done || round->broken; })) {
                break_round();
                throw ServerError{"BrokenBarrierError", "the barrier wait timed out"};
            }
            if (!round->done) throw ServerError{"BrokenBarrierError", "the barrier is broken"};
            return dumps(index);
        }
        if (m == "abort") {
            break_round();
            return none();
        }
        if (m == "reset") {
            current_->broken = true;
            next_round();
            broken_ = false;
            changed_.notify_all();
            return none();
        }
        if (m == "parties") return dumps(parties_);
        if (m == "n_waiting") return dumps(count_);
        if (m == "broken") return dumps(broken_);
        not_exposed(m, "Barrier");
    }

private:
    struct Round {
        bool done = false;
        bool broken = false;
    };
    void next_round() {
        current_ = std::make_shared<Round>();
        count_ = 0;
    }
    void break_round() {
        current_->broken = true;
        broken_ = true;
        count_ = 0;
        changed_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::int64_t parties_;
    std::int64_t default_timeout_;
    BarrierAction action_;
    std::int64_t count_ = 0;
    bool broken_ = false;
    std::shared_ptr<Round> current_ = std::make_shared<Round>();
};

// A registered user type's object. Calls are serialized (a C++ object is not thread-safe by
// default, and each client is served by its own thread), unless the type was registered
// concurrent(): then they run at once, each on its client's thread.
class RegisteredReferent final : public Referent {
public:
    RegisteredReferent(const RegisteredType& type, const Blobs& args) : type_(type), object_(type.create(args)) {}
    ~RegisteredReferent() override { type_.destroy(object_); }
    Blob call(std::string_view m, const Blobs& args, const Caller&) override {
        for (const auto& method : type_.methods) {
            if (method.name != m) continue;
            if (type_.concurrent) return method.call(object_, args);
            std::lock_guard lock(mutex_);
            return method.call(object_, args);
        }
        std::string exposed;
        for (const auto& method : type_.methods) exposed += (exposed.empty() ? "'" : ", '") + method.name + "'";
        if (type_.methods.size() == 1) exposed += ",";
        throw ServerError{"AttributeError", fmt::format("method '{}' of '{}' object is not in exposed=({})", m,
                                                        type_.class_name, exposed)};
    }

private:
    const RegisteredType& type_;
    void* object_;
    std::mutex mutex_;
};

}  // namespace

namespace {
// Gives back one reference to each object; those left with none are deleted, outside the lock.
void give_back(ServerState& server, const std::vector<std::uint64_t>& ids) {
    std::vector<std::shared_ptr<Referent>> dying;
    std::lock_guard lock(server.mutex);
    for (const auto id : ids) {
        auto it = server.objects.find(id);
        if (it == server.objects.end()) continue;  // the server is being destroyed
        if (--it->second.refcount == 0) {
            dying.push_back(std::move(it->second.referent));
            server.objects.erase(it);
        }
    }
}

void take(ServerState& server, const std::vector<std::uint64_t>& ids) {
    std::lock_guard lock(server.mutex);
    for (const auto id : ids)
        if (!server.objects.contains(id))
            throw ServerError{"ReferenceError", fmt::format("no object with id {} in the manager (already released?)", id)};
    for (const auto id : ids) ++server.objects.at(id).refcount;
}
}  // namespace

StoredReferences::StoredReferences(ServerState& server, std::vector<std::uint64_t> ids)
    : server_(server), ids_(std::move(ids)) {
    take(server_, ids_);
}

StoredReferences::~StoredReferences() { give_back(server_, ids_); }

void StoredReferences::hand_over() const { take(server_, ids_); }

std::shared_ptr<Referent> make_builtin(ServerState& server, std::string_view t, const Blobs& args) {
    if (t == "Pool") return make_pool_referent(args);
    if (t == "dict") return std::make_shared<DictReferent>();
    if (t == "list") return std::make_shared<ListReferent>();
    if (t == "Namespace") return std::make_shared<NamespaceReferent>();
    if (t == "Value") return std::make_shared<ValueReferent>(raw_arg(args, 0));
    if (t == "Array") return std::make_shared<ListReferent>(arg<std::uint64_t>(args, 0), raw_arg(args, 1));
    if (t == "Queue" || t == "JoinableQueue")
        return std::make_shared<QueueReferent>(arg<std::uint64_t>(args, 0), t == "JoinableQueue");
    if (t == "Lock" || t == "RLock") return std::make_shared<LockReferent>(t == "RLock", false);
    if (t == "Condition") return std::make_shared<LockReferent>(true, true);
    if (t == "Semaphore" || t == "BoundedSemaphore")
        return std::make_shared<SemaphoreReferent>(arg<std::int64_t>(args, 0), t == "BoundedSemaphore");
    if (t == "Event") return std::make_shared<EventReferent>();
    if (t == "Barrier") return std::make_shared<BarrierReferent>(server, args);
    return nullptr;
}

std::shared_ptr<Referent> make_registered(const RegisteredType& type, const Blobs& args) {
    return std::make_shared<RegisteredReferent>(type, args);
}

}  // namespace mproc::detail
