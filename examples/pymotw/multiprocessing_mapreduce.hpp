#pragma once
// SimpleMapReduce: a MapReduce on a pool (PyMOTW's multiprocessing_mapreduce.py): a Pool of its own,
// or any mproc::BasicPool the caller lends it.
//
//   std::vector<std::pair<std::string, int>> file_to_words(const std::string& filename);
//   std::pair<std::string, int> count_words(const std::pair<std::string, std::vector<int>>& item);
//
//   SimpleMapReduce mapper(file_to_words, count_words);     // starts cpu_count workers
//   std::vector<std::pair<std::string, int>> counts = mapper(filenames);
//
//   SimpleMapReduce on_mine(my_pool, file_to_words, count_words);  // any mproc::BasicPool, borrowed
//
// The map function turns one input into a sequence of (key, value) pairs; the reduce function
// turns one (key, all values of that key) item into one result. Both run in the pool's workers,
// which exist before any input does, so they must be functions or lambdas without captures, and
// inputs, keys, values and results must be Encodable (mproc/codec.hpp). Keys must be hashable.
#include <cstddef>
#include <memory>
#include <optional>
#include <type_traits>
#include <ranges>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mproc/pool.hpp>

template <class MapFn, class ReduceFn>
class SimpleMapReduce {
public:
    // Starts a Pool of its own; num_workers unset: the pool's default size.
    SimpleMapReduce(MapFn map_func, ReduceFn reduce_func, std::optional<int> num_workers = std::nullopt)
        : map_func_(map_func),
          reduce_func_(reduce_func),
          own_pool_(std::make_unique<mproc::Pool>(mproc::PoolOptions{.processes = num_workers})),
          pool_(own_pool_.get()) {}
    // Runs on `pool`, which the caller owns, closes and joins: it must outlive this object.
    SimpleMapReduce(mproc::BasicPool& pool, MapFn map_func, ReduceFn reduce_func)
        : map_func_(map_func), reduce_func_(reduce_func), pool_(&pool) {}

    // Python leaves the pool to the exit-time finalizers; closing its own pool lets the workers end
    // normally. A borrowed pool is left as it is.
    ~SimpleMapReduce() {
        if (own_pool_) {
            own_pool_->close();
            own_pool_->join();
        }
    }
    SimpleMapReduce(const SimpleMapReduce&) = delete;
    SimpleMapReduce& operator=(const SimpleMapReduce&) = delete;

    // Groups the values by key. Keys stay in the order of their first appearance, because callers
    // that sort the results stably (example 25) list ties in that order.
    template <class Key, class Value>
    static std::vector<std::pair<Key, std::vector<Value>>> partition(const std::vector<std::pair<Key, Value>>& mapped_values) {
        std::vector<std::pair<Key, std::vector<Value>>> partitioned;
        std::unordered_map<Key, std::size_t> index;
        for (const auto& [key, value] : mapped_values) {
            auto [it, added] = index.try_emplace(key, partitioned.size());
            if (added) partitioned.emplace_back(key, std::vector<Value>{});
            partitioned[it->second].second.push_back(value);
        }
        return partitioned;
    }

    // Maps the inputs (`chunksize` inputs per task), partitions the pairs, reduces each key.
    // Results come in the order of the keys' first appearance. `on_progress` follows the map phase.
    template <std::ranges::input_range Inputs>
    auto operator()(Inputs&& inputs, std::size_t chunksize = 1, mproc::ProgressCallback on_progress = {}) {
        using Input = std::ranges::range_value_t<Inputs>;
        using Mapped = std::decay_t<std::invoke_result_t<MapFn&, Input&>>;  // a sequence of (key, value)
        mproc::MapOptions<Mapped> options{.chunksize = chunksize, .on_progress = std::move(on_progress)};
        const std::vector<Mapped> map_responses = pool_->map(map_func_, std::forward<Inputs>(inputs), std::move(options));

        std::vector<std::ranges::range_value_t<Mapped>> mapped_values;
        for (const auto& response : map_responses) mapped_values.insert(mapped_values.end(), response.begin(), response.end());
        const auto partitioned_data = partition(mapped_values);
        return pool_->map(reduce_func_, partitioned_data);
    }

private:
    MapFn map_func_;
    ReduceFn reduce_func_;
    std::unique_ptr<mproc::Pool> own_pool_;  // null when the pool is borrowed
    mproc::BasicPool* pool_;
};
