// The container proxies' full method sets (ListProxy, DictProxy, Namespace), proxies stored in
// managed containers, and SyncManager::start(initializer, args...), under every start method.
// Ports of CPython's _TestContainers, TestSyncManagerTypes.test_list and
// TestInitializers.test_manager_initializer (Lib/test/_test_multiprocessing.py) are marked with
// the test they come from. Waits are for states: every call here returns when the server answers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "helpers/manager_test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/managers.hpp"

using mproc::StartMethod;
using mproc_test::range;
using mproc_test::require;
using mproc_test::thrown_text;

namespace {

using Counts = mproc::DictProxy<std::string, int>;

// What an iterator still has to give (Python's list(it)).
template <class It>
std::vector<std::decay_t<decltype(*std::declval<It&>())>> drain(It& it) {
    std::vector<std::decay_t<decltype(*it)>> out;
    for (; it != std::default_sentinel; ++it) out.push_back(*it);
    return out;
}

template <class R>
auto collect(const R& range) {
    auto it = range.begin();
    return drain(it);
}

class ManagerProxies : public mproc_test::ManagerFixture {};
MPROC_MANAGER_TESTS_UNDER_EVERY_START_METHOD(ManagerProxies);

// _TestContainers ----------------------------------------------------------------------------

// CPython: _TestContainers.test_list (the 'hello' appended to a list of ints is 10 here)
TEST_P(ManagerProxies, List) {
    auto manager = mproc::Manager(options());
    auto a = manager.list<int>(range(10));
    EXPECT_EQ(a.copy(), range(10));
    auto b = manager.list<int>();
    EXPECT_EQ(b.copy(), std::vector<int>{});
    b.extend(range(5));
    EXPECT_EQ(b.copy(), range(5));
    EXPECT_EQ(b[2].get(), 2);
    EXPECT_EQ(b.slice(2, 10), (std::vector<int>{2, 3, 4}));

    b *= 2;
    EXPECT_EQ(b.copy(), (std::vector<int>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}));
    EXPECT_EQ(b + std::vector<int>({5, 6}), (std::vector<int>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(a.copy(), range(10));

    auto e = manager.list<mproc::ListProxy<int>>(std::vector<mproc::ListProxy<int>>{a, b});
    std::vector<std::vector<int>> contents;
    for (const auto& element : e) contents.push_back(element.copy());
    EXPECT_EQ(contents, (std::vector<std::vector<int>>{range(10), {0, 1, 2, 3, 4, 0, 1, 2, 3, 4}}));

    auto f = manager.list<mproc::ListProxy<int>>(std::vector<mproc::ListProxy<int>>{a});
    a.append(10);
    EXPECT_EQ(f.getitem(0).copy(), range(11));
}

// CPython: _TestContainers.test_list_iter
TEST_P(ManagerProxies, ListIter) {
    auto manager = mproc::Manager(options());
    auto a = manager.list<int>(range(10));
    auto it = a.begin();
    EXPECT_EQ(drain(it), range(10));
    EXPECT_EQ(drain(it), std::vector<int>{});  // exhausted
    // The list modified during the iteration: the iterator reads each element when it reaches it.
    auto again = a.begin();
    a[0] = 100;
    EXPECT_EQ(*again, 100);
}

// CPython: _TestContainers.test_list_proxy_in_list (the inner lists are temporaries, kept alive by
// the outer list; `b.append(b)`, a list holding itself, has no typed equivalent)
TEST_P(ManagerProxies, ListProxyInList) {
    auto manager = mproc::Manager(options());
    {
        auto a = manager.list<mproc::ListProxy<int>>();
        for (int i = 0; i < 3; ++i) a.append(manager.list<int>(range(3)));
        std::vector<std::vector<int>> inner;
        for (const auto& each : a) inner.push_back(each.copy());
        EXPECT_EQ(inner, std::vector<std::vector<int>>(3, range(3)));

        a.getitem(0)[-1] = 55;
        EXPECT_EQ(a.getitem(0).copy(), (std::vector<int>{0, 1, 55}));
        for (int i = 1; i < 3; ++i) EXPECT_EQ(a.getitem(i).copy(), range(3));

        EXPECT_EQ(a.getitem(1).pop(), 2);
        EXPECT_EQ(a.getitem(1).size(), 2u);
        for (int i = 0; i < 3; i += 2) EXPECT_EQ(a.getitem(i).size(), 3u);
        EXPECT_EQ(manager.number_of_objects(), 4u);
    }
    // `del a`: the outer list and the three it held are gone.
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

// CPython: _TestContainers.test_dict
TEST_P(ManagerProxies, Dict) {
    auto manager = mproc::Manager(options());
    auto d = manager.dict<int, std::string>();
    std::map<int, std::string> expected;
    for (int i = 65; i < 70; ++i) {
        d[i] = std::string(1, static_cast<char>(i));
        expected[i] = std::string(1, static_cast<char>(i));
    }
    EXPECT_EQ(d.copy(), expected);
    EXPECT_TRUE(d == expected);
    auto keys = d.keys();
    std::sort(keys.begin(), keys.end());
    EXPECT_EQ(keys, (std::vector<int>{65, 66, 67, 68, 69}));
    auto values = d.values();
    std::sort(values.begin(), values.end());
    EXPECT_EQ(values, (std::vector<std::string>{"A", "B", "C", "D", "E"}));
    auto items = d.items();
    std::sort(items.begin(), items.end());
    EXPECT_EQ(items, (std::vector<std::pair<int, std::string>>(expected.begin(), expected.end())));
}

// CPython: _TestContainers.test_dict_iter (Python's RuntimeError is a UsageError here)
TEST_P(ManagerProxies, DictIter) {
    auto manager = mproc::Manager(options());
    auto d = manager.dict<int, std::string>();
    for (int i = 65; i < 70; ++i) d[i] = std::string(1, static_cast<char>(i));
    auto it = d.begin();
    EXPECT_EQ(drain(it), (std::vector<int>{65, 66, 67, 68, 69}));
    EXPECT_EQ(drain(it), std::vector<int>{});  // exhausted
    // The dictionary changed size during the iteration.
    auto again = d.begin();
    d.clear();
    EXPECT_EQ(thrown_text<mproc::UsageError>([&] { static_cast<void>(*again); }),
              "dictionary changed size during iteration");
}

// CPython: _TestContainers.test_dict_proxy_nested (the mixed list `outer` is a list of variants)
TEST_P(ManagerProxies, DictProxyNested) {
    auto manager = mproc::Manager(options());
    std::optional<Counts> pets = manager.dict<std::string, int>(std::map<std::string, int>{{"ferrets", 2}, {"hamsters", 4}});
    std::optional<Counts> supplies = manager.dict<std::string, int>(std::map<std::string, int>{{"water", 10}, {"feed", 3}});
    auto d = manager.dict<std::string, Counts>(std::map<std::string, Counts>{{"pets", *pets}, {"supplies", *supplies}});

    EXPECT_EQ((*supplies)["water"].get(), 10);
    EXPECT_EQ(d.getitem("supplies")["water"].get(), 10);

    d.getitem("supplies")["blankets"] = 5;
    EXPECT_EQ((*supplies)["blankets"].get(), 5);
    EXPECT_EQ(d.getitem("supplies")["blankets"].get(), 5);

    d.getitem("supplies")["water"] = 7;
    EXPECT_EQ((*supplies)["water"].get(), 7);
    EXPECT_EQ(d.getitem("supplies")["water"].get(), 7);

    pets.reset();  // del pets
    supplies.reset();
    EXPECT_EQ(d.getitem("pets")["ferrets"].get(), 2);
    d.getitem("supplies")["blankets"] = 11;
    EXPECT_EQ(d.getitem("supplies")["blankets"].get(), 11);

    pets = d.getitem("pets");
    supplies = d.getitem("supplies");
    (*supplies)["water"] = 7;
    EXPECT_EQ((*supplies)["water"].get(), 7);
    EXPECT_EQ(d.getitem("supplies")["water"].get(), 7);

    d.clear();
    EXPECT_EQ(d.size(), 0u);
    EXPECT_EQ((*supplies)["water"].get(), 7);
    EXPECT_EQ((*pets)["hamsters"].get(), 4);

    auto l = manager.list<Counts>(std::vector<Counts>{*pets, *supplies});
    l.getitem(0)["marmots"] = 1;
    EXPECT_EQ((*pets)["marmots"].get(), 1);
    EXPECT_EQ(l.getitem(0)["marmots"].get(), 1);

    pets.reset();
    supplies.reset();
    EXPECT_EQ(l.getitem(0)["marmots"].get(), 1);

    using Entry = std::variant<std::vector<int>, mproc::ListProxy<Counts>>;
    auto outer = manager.list<Entry>(std::vector<Entry>{std::vector<int>{88, 99}, l});
    EXPECT_TRUE(std::holds_alternative<std::vector<int>>(outer.getitem(0)));  // not a ListProxy
    EXPECT_EQ(std::get<mproc::ListProxy<Counts>>(outer.getitem(-1)).getitem(-1)["feed"].get(), 3);
}

// CPython: _TestContainers.test_nested_queue (the queues are temporaries)
TEST_P(ManagerProxies, NestedQueue) {
    auto manager = mproc::Manager(options());
    auto a = manager.list<mproc::QueueProxy<int>>();
    a.append(manager.Queue<int>());
    a.getitem(0).put(123);
    EXPECT_EQ(a.getitem(0).get(), 123);
    auto b = manager.dict<int, mproc::QueueProxy<int>>();
    b[0] = manager.Queue<int>();
    b.getitem(0).put(456);
    EXPECT_EQ(b.getitem(0).get(), 456);
}

// CPython: _TestContainers.test_namespace
TEST_P(ManagerProxies, Namespace) {
    auto manager = mproc::Manager(options());
    auto n = manager.Namespace();
    n.set("name", "Bob");
    n.set("job", "Builder");
    n.set("_hidden", "hidden");
    EXPECT_EQ(n.get<std::string>("name"), "Bob");
    EXPECT_EQ(n.get<std::string>("job"), "Builder");
    n.erase("job");
    EXPECT_EQ(n.str(), "Namespace(name='Bob')");
    EXPECT_TRUE(n.contains("name"));
    EXPECT_FALSE(n.contains("job"));
    EXPECT_EQ(n.get<std::string>("_hidden"), "hidden");
}

// TestSyncManagerTypes -------------------------------------------------------------------------

void list_in_child(mproc::ListProxy<int> list) {
    require(list.getitem(0) == 5, "obj[0]");
    require(list.count(5) == 1, "count");
    require(list.index(5) == 0, "index");
    list.sort();
    list.reverse();
    for (int x : list) static_cast<void>(x);
    require(list.size() == 1, "len");
    require(list.pop(0) == 5, "pop(0)");
}

// CPython: TestSyncManagerTypes.test_list
TEST_P(ManagerProxies, SyncTypesList) {
    auto manager = mproc::Manager(options());
    auto list = manager.list<int>();
    list.append(5);
    run_worker(list_in_child, list);
    EXPECT_EQ(list.size(), 0u);
}

// TestInitializers -----------------------------------------------------------------------------

void count_start(mproc::Namespace ns) { ns.set("test", ns.get<int>("test") + 1); }

// CPython: TestInitializers.test_manager_initializer (start(1), not callable, does not compile)
TEST_P(ManagerProxies, ManagerInitializer) {
    auto other = mproc::Manager(options());
    auto ns = other.Namespace();
    ns.set("test", 0);
    mproc::SyncManager m(options());
    m.start(count_start, ns);
    EXPECT_EQ(ns.get<int>("test"), 1);
    m.shutdown();
}

// The rest of the list proxy -----------------------------------------------------------------

TEST_P(ManagerProxies, ListOperatorsAndComparison) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<int>(std::vector<int>{1, 2});
    l += std::vector<int>{3};
    l += {4, 5};
    EXPECT_EQ(l.copy(), (std::vector<int>{1, 2, 3, 4, 5}));
    EXPECT_TRUE(l == (std::vector<int>{1, 2, 3, 4, 5}));
    EXPECT_TRUE((std::vector<int>{1, 2, 3, 4, 5}) == l);
    EXPECT_FALSE(l == (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(l * 2, (std::vector<int>{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}));
    EXPECT_EQ(2 * l, l * 2);
    EXPECT_EQ(l.size(), 5u);  // + and * make plain copies
    l *= 0;
    EXPECT_TRUE(l.empty());
    l.append(7);
    l *= -3;
    EXPECT_TRUE(l.empty());
}

TEST_P(ManagerProxies, ListSort) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<int>(std::vector<int>{3, 1, 2, 5, 4});
    l.sort();
    EXPECT_EQ(l.copy(), (std::vector<int>{1, 2, 3, 4, 5}));
    l.sort(true);
    EXPECT_EQ(l.copy(), (std::vector<int>{5, 4, 3, 2, 1}));

    auto words = manager.list<std::string>(std::vector<std::string>{"pear", "fig", "apple", "kiwi"});
    words.sort();
    EXPECT_EQ(words.copy(), (std::vector<std::string>{"apple", "fig", "kiwi", "pear"}));
    // Stable, with a comparison of one's own (Python's key=len), also in reverse.
    auto shorter = [](const std::string& a, const std::string& b) { return a.size() < b.size(); };
    words.sort(shorter);
    EXPECT_EQ(words.copy(), (std::vector<std::string>{"fig", "kiwi", "pear", "apple"}));
    words.sort(shorter, true);
    EXPECT_EQ(words.copy(), (std::vector<std::string>{"apple", "kiwi", "pear", "fig"}));
}

void count_items(mproc::ListProxy<int> list, mproc::ValueProxy<int> seen) {
    int n = 0;
    for (int x : list) n += x;
    seen.set(n);
}

TEST_P(ManagerProxies, ListIteratedInAChild) {
    auto manager = mproc::Manager(options());
    auto list = manager.list<int>(range(5));
    auto seen = manager.Value<int>(0);
    run_worker(count_items, list, seen);
    EXPECT_EQ(seen.get(), 10);
}

// The rest of the dict proxy -----------------------------------------------------------------

TEST_P(ManagerProxies, DictMethods) {
    auto manager = mproc::Manager(options());
    auto d = manager.dict<std::string, int>();
    EXPECT_EQ(d.setdefault("a", 1), 1);
    EXPECT_EQ(d.setdefault("a", 2), 1);
    EXPECT_EQ(d.setdefault("b"), 0);
    EXPECT_EQ(d.get("a", 9), 1);
    EXPECT_EQ(d.get("zz", 9), 9);
    EXPECT_TRUE(d == (std::map<std::string, int>{{"a", 1}, {"b", 0}}));
    EXPECT_TRUE((std::unordered_map<std::string, int>{{"a", 1}, {"b", 0}}) == d);
    EXPECT_FALSE(d == (std::map<std::string, int>{{"a", 1}}));
    EXPECT_EQ(d.popitem(), (std::pair<std::string, int>{"b", 0}));
    EXPECT_EQ(d.popitem(), (std::pair<std::string, int>{"a", 1}));
    EXPECT_EQ(thrown_text<mproc::KeyError>([&] { d.popitem(); }), "popitem(): dictionary is empty");
}

TEST_P(ManagerProxies, DictIterItemsAndChanges) {
    auto manager = mproc::Manager(options());
    auto d = manager.dict<std::string, int>();
    d["x"] = 1;
    d["y"] = 2;
    d["z"] = 3;
    std::vector<std::pair<std::string, int>> seen;
    for (auto [key, value] : d.iter_items()) seen.emplace_back(key, value);
    EXPECT_EQ(seen, (std::vector<std::pair<std::string, int>>{{"x", 1}, {"y", 2}, {"z", 3}}));
    EXPECT_EQ(collect(d.iter_items()).size(), 3u);  // each begin() walks anew

    // A value changed during the iteration is seen; the keys are not disturbed.
    auto it = d.begin();
    EXPECT_EQ(*it, "x");
    d["y"] = 20;
    ++it;
    EXPECT_EQ(*it, "y");
    EXPECT_EQ(d.getitem(*it), 20);
    // A key replaced by another, the size the same: Python's other message.
    d.erase("z");
    d["w"] = 4;
    ++it;
    EXPECT_EQ(thrown_text<mproc::UsageError>([&] { static_cast<void>(*it); }),
              "dictionary keys changed during iteration");
    // A key added after the last one was read: the end is not reached silently.
    auto keys = d.begin();
    for (int i = 0; i < 3; ++i) ++keys;
    d["v"] = 5;
    EXPECT_EQ(thrown_text<mproc::UsageError>([&] { static_cast<void>(keys == std::default_sentinel); }),
              "dictionary changed size during iteration");
}

// Proxies kept alive by the containers that store them ----------------------------------------

TEST_P(ManagerProxies, StoredProxyLivesUntilRemoved) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<Counts>();
    l.append(manager.dict<std::string, int>(std::map<std::string, int>{{"a", 1}}));
    l.append(manager.dict<std::string, int>());
    l.insert(0, manager.dict<std::string, int>());
    EXPECT_EQ(manager.number_of_objects(), 4u);
    EXPECT_EQ(l.getitem(1)["a"].get(), 1);

    l.erase(0);  // del l[0]
    EXPECT_EQ(manager.number_of_objects(), 3u);
    l[0] = manager.dict<std::string, int>();  // the one replaced is released
    EXPECT_EQ(manager.number_of_objects(), 3u);
    l.clear();
    EXPECT_EQ(manager.number_of_objects(), 1u);
}

TEST_P(ManagerProxies, PoppedProxyIsTheCallersOnly) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<Counts>();
    l.append(manager.dict<std::string, int>(std::map<std::string, int>{{"kept", 1}}));
    {
        Counts popped = l.pop();  // the list held the only reference: it is the caller's now
        EXPECT_EQ(manager.number_of_objects(), 2u);
        EXPECT_EQ(popped["kept"].get(), 1);
    }
    EXPECT_EQ(manager.number_of_objects(), 1u);

    auto d = manager.dict<std::string, Counts>();
    d["one"] = manager.dict<std::string, int>(std::map<std::string, int>{{"n", 1}});
    d["two"] = manager.dict<std::string, int>(std::map<std::string, int>{{"n", 2}});
    EXPECT_EQ(manager.number_of_objects(), 4u);
    {
        auto [key, value] = d.popitem();
        EXPECT_EQ(key, "two");
        EXPECT_EQ(value["n"].get(), 2);
        EXPECT_EQ(d.pop("one")["n"].get(), 1);
    }
    EXPECT_EQ(manager.number_of_objects(), 2u);
}

TEST_P(ManagerProxies, ContainerReleasesWhatItHoldsWhenItDies) {
    auto manager = mproc::Manager(options());
    {
        auto outer = manager.dict<std::string, mproc::ListProxy<Counts>>();
        outer["lists"] = manager.list<Counts>();
        outer.getitem("lists").append(manager.dict<std::string, int>());
        outer.getitem("lists").extend(std::vector<Counts>{manager.dict<std::string, int>(), manager.dict<std::string, int>()});
        outer.getitem("lists") *= 2;  // the copies share their dicts
        EXPECT_EQ(outer.getitem("lists").size(), 6u);
        EXPECT_EQ(manager.number_of_objects(), 5u);
        outer.update(std::map<std::string, mproc::ListProxy<Counts>>{{"more", manager.list<Counts>()}});
        EXPECT_EQ(outer.setdefault("most", manager.list<Counts>()).size(), 0u);
        EXPECT_EQ(manager.number_of_objects(), 7u);
    }
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

TEST_P(ManagerProxies, NamespaceAttributeHoldsItsProxy) {
    auto manager = mproc::Manager(options());
    auto ns = manager.Namespace();
    ns.set("numbers", manager.list<int>(range(3)));
    EXPECT_EQ(ns.get<mproc::ListProxy<int>>("numbers").copy(), range(3));
    EXPECT_EQ(manager.number_of_objects(), 2u);
    ns.erase("numbers");
    EXPECT_EQ(manager.number_of_objects(), 1u);
}

void store_from_child(mproc::ListProxy<Counts> list, mproc::DictProxy<std::string, int> made_there) {
    made_there["from"] = static_cast<int>(::getpid());
    list.append(made_there);
}

TEST_P(ManagerProxies, ProxyStoredByAChildOutlivesIt) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<Counts>();
    int child_pid = 0;
    {
        // The handle lives until the child is done with it: a Process drops its arguments when it
        // has started, as Python's does.
        auto made = manager.dict<std::string, int>();
        auto child = child_process(store_from_child, l, made);
        child.start();
        child.join();
        ASSERT_EQ(child.exitcode(), 0);
        child_pid = *child.pid();
    }
    // The child and the parent's handle are gone; the list holds the dict.
    EXPECT_EQ(manager.number_of_objects(), 2u);
    EXPECT_EQ(l.getitem(0)["from"].get(), child_pid);
}

void store_and_pop(mproc::ListProxy<Counts> list, Counts mine, int times) {
    for (int i = 0; i < times; ++i) {
        list.append(mine);
        Counts taken = list.pop();  // perhaps another child's: its reference comes along
        require(taken.valid(), "a popped proxy");
    }
}

// Children storing and popping proxies at once: every reference taken is given back.
TEST_P(ManagerProxies, ConcurrentStoresAndPopsBalance) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<Counts>();
    {
        std::vector<Counts> dicts;  // held until the children are done (a Process drops its arguments)
        std::vector<mproc::Process> children;
        for (int i = 0; i < 3; ++i) {
            dicts.push_back(manager.dict<std::string, int>());
            children.push_back(child_process(store_and_pop, l, dicts.back(), 50));
        }
        for (auto& child : children) child.start();
        for (auto& child : children) child.join();
        for (auto& child : children) EXPECT_EQ(child.exitcode(), 0);
    }
    EXPECT_EQ(l.size(), 0u);
    EXPECT_EQ(manager.number_of_objects(), 1u);
}

TEST_P(ManagerProxies, HoldingAReleasedObjectIsRefused) {
    auto manager = mproc::Manager(options());
    auto l = manager.list<mproc::ListProxy<int>>();
    std::vector<std::byte> stored;
    std::uint64_t id = 0;
    {
        auto inner = manager.list<int>();
        stored = mproc::dumps(inner);
        id = inner.object_id();
    }
    EXPECT_EQ(manager.number_of_objects(), 1u);
    // What a client would send to store a proxy of the released object: refused, nothing stored.
    try {
        l.callmethod("append", {stored, mproc::dumps(std::vector<std::uint64_t>{id})});
        ADD_FAILURE() << "nothing thrown";
    } catch (const mproc::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "ReferenceError");
    }
    EXPECT_EQ(l.size(), 0u);
}

// Namespace -----------------------------------------------------------------------------------

TEST_P(ManagerProxies, NamespaceReprIsSortedWithPythonsReprs) {
    auto manager = mproc::Manager(options());
    auto ns = manager.Namespace();
    EXPECT_EQ(ns.str(), "Namespace()");
    ns.set("b", std::string("x"));
    ns.set("a", 1);
    ns.set("flag", true);
    ns.set("ratio", 1.5);
    ns.set("items", std::vector<int>{1, 2});
    ns.set("a0", std::string("it's"));
    EXPECT_EQ(ns.str(), "Namespace(a0=\"it's\", a=1, b='x', flag=True, items=[1, 2], ratio=1.5)");
    EXPECT_EQ(to_string(ns), ns.str());
    EXPECT_EQ(ns.names(), (std::vector<std::string>{"b", "a", "flag", "ratio", "items", "a0"}));
}

// A forked child has a copy of the parent's proxy, '_' attributes included (as in Python); a
// spawned one has a proxy of its own. Either way what it sets stays with its proxy.
void read_hidden(mproc::Namespace ns, bool inherited) {
    require(ns.contains("_hidden") == inherited, "a '_' attribute stays with its proxy");
    require(ns.get<int>("shown") == 1, "shown");
    ns.set("_hidden", std::string("set in the child"));
}

TEST_P(ManagerProxies, UnderscoreNamesStayWithTheProxy) {
    auto manager = mproc::Manager(options());
    auto ns = manager.Namespace();
    ns.set("_hidden", 5);
    ns.set("shown", 1);
    EXPECT_EQ(ns.get<int>("_hidden"), 5);
    mproc::Namespace copy = ns;
    EXPECT_EQ(copy.get<int>("_hidden"), 5);  // a copy of the handle is the same proxy
    EXPECT_EQ(ns.names(), std::vector<std::string>{"shown"});
    EXPECT_EQ(ns.str(), "Namespace(shown=1)");
    run_worker(read_hidden, ns, GetParam() == StartMethod::fork);
    EXPECT_EQ(ns.get<int>("_hidden"), 5);
    EXPECT_THROW(ns.get<std::string>("_hidden"), mproc::DecodeError);
    ns.erase("_hidden");
    EXPECT_FALSE(ns.contains("_hidden"));
    EXPECT_EQ(thrown_text<mproc::AttributeError>([&] { ns.get<int>("_hidden"); }),
              "'NamespaceProxy' object has no attribute '_hidden'");
    EXPECT_EQ(thrown_text<mproc::AttributeError>([&] { ns.erase("_hidden"); }),
              "'NamespaceProxy' object has no attribute '_hidden'");
    // A proxy kept in the handle keeps its object alive, as an attribute of Python's proxy does.
    ns.set("_counts", manager.dict<std::string, int>(std::map<std::string, int>{{"n", 3}}));
    EXPECT_EQ(ns.get<Counts>("_counts")["n"].get(), 3);
    EXPECT_EQ(manager.number_of_objects(), 2u);
}

// start(initializer, args...) ------------------------------------------------------------------

std::string& greeting() {
    static std::string text;
    return text;
}
void set_greeting(std::string text) { greeting() = std::move(text); }

class Greeter {
public:
    std::string greet() { return greeting(); }
};

void record_pid(mproc::ValueProxy<int> pid) { pid.set(static_cast<int>(::getpid())); }

TEST_P(ManagerProxies, InitializerRunsInTheServerBeforeItServes) {
    mproc::BaseManager manager(options());
    manager.register_type<Greeter>("Greeter").method<&Greeter::greet>("greet");
    manager.start(set_greeting, std::string("set by the initializer"));
    EXPECT_EQ(manager.create("Greeter").call<std::string>("greet"), "set by the initializer");
    EXPECT_EQ(greeting(), "");  // not in this process

    auto other = mproc::Manager(options());
    auto pid = other.Value<int>(0);
    mproc::SyncManager recorded(options());
    recorded.start(record_pid, pid);
    EXPECT_EQ(pid.get(), *recorded.process()->pid());
}

void failing_initializer() { throw std::invalid_argument("no configuration"); }

TEST_P(ManagerProxies, ThrowingInitializerFailsStart) {
    mproc::SyncManager manager(options());
    EXPECT_EQ(thrown_text<mproc::ProcessError>([&] { manager.start(failing_initializer); }),
              "Unable to start server: the initializer threw std::invalid_argument: no configuration");
    EXPECT_FALSE(manager.process().has_value());
    EXPECT_THROW(manager.number_of_objects(), mproc::UsageError);
    manager.start();  // the manager is still unstarted: it can start without the initializer
    EXPECT_EQ(manager.list<int>(range(2)).copy(), range(2));
}

TEST_P(ManagerProxies, CapturingInitializerOnlyUnderFork) {
    auto other = mproc::Manager(options());
    auto pid = other.Value<int>(0);
    mproc::SyncManager manager(options());
    auto capturing = [pid] { pid.set(static_cast<int>(::getpid())); };
    if (GetParam() == StartMethod::fork) {
        manager.start(capturing);
        EXPECT_EQ(pid.get(), *manager.process()->pid());
    } else {
        EXPECT_THROW(manager.start(capturing), mproc::UsageError);
        EXPECT_FALSE(manager.process().has_value());
    }
}

}  // namespace
