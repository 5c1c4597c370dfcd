#pragma once
// Messages for the queue suites: numbered by producer and sequence, with content that a consumer
// can check (a garbled message never passes for a good one) and sizes that send some messages
// through the queue in chunks.
#include <cstddef>
#include <random>
#include <string>

namespace mproc::testing {

struct QueueItem {
    int producer = 0;
    int seq = 0;
    std::string payload;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(producer, seq, payload);
    }
};

// The payload of message `seq` of `producer`: deterministic, from empty to a few hundred bytes,
// and one message in 17 from 1.5 to 3 times `buffer_size` (so that it travels in chunks).
inline std::string queue_payload(int producer, int seq, std::size_t buffer_size) {
    std::mt19937 rng(static_cast<unsigned>(producer * 1000003 + seq));
    const std::size_t size = (seq % 17 == 0) ? buffer_size * 3 / 2 + rng() % (buffer_size * 3 / 2) : rng() % 300;
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (producer + seq + i) % 26);
    return s;
}

}  // namespace mproc::testing
