// Randomized robustness test for mproc/codec.hpp: valid encodings of a complex nested type are
// mutated (bit flips, truncations, insertions, overwrites, duplicated and deleted ranges, varint
// look-alikes) and decoded. Decoding must either produce a value or throw mproc::DecodeError:
// any other exception fails the test, and a crash, an out-of-bounds read, an oversized
// allocation or undefined behaviour fails it under the sanitizer build. The seeds are fixed so
// that a failure reproduces; the iteration counts keep the test to a few seconds under ASan.
#include "mproc/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

namespace {

using Bytes = std::vector<std::byte>;

enum class Kind : std::uint8_t { leaf, branch, root };

struct Sample {  // plain: copied as bytes
    std::int32_t id;
    float weight;
    friend bool operator==(const Sample& a, const Sample& b) {
        return a.id == b.id &&
               std::bit_cast<std::uint32_t>(a.weight) == std::bit_cast<std::uint32_t>(b.weight);
    }
};

struct Record {
    std::string name;
    Kind kind = Kind::leaf;
    bool active = false;
    std::vector<std::int32_t> ids;
    std::vector<bool> flags;
    std::map<std::string, std::vector<std::int64_t>> series;
    std::optional<std::variant<std::monostate, std::int64_t, std::string, Sample>> tag;
    std::deque<std::pair<std::uint8_t, std::u16string>> labels;
    std::unordered_set<std::int16_t> seen;
    std::list<std::tuple<bool, char, std::array<std::uint16_t, 3>>> items;
    std::set<std::tuple<>> empties;
    std::vector<Sample> samples;
    std::chrono::milliseconds age{0};
    std::vector<Record> children;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(name), kind, active, ids, flags, series, tag, labels, seen, items, empties,
           samples, age, children);
    }
    friend bool operator==(const Record&, const Record&) = default;
};

class Generator {
public:
    explicit Generator(std::uint32_t seed) : rng_(seed) {}

    Record record(int depth) {
        Record r;
        r.name = text(below(12));
        r.kind = static_cast<Kind>(below(3));
        r.active = below(2) == 1;
        for (int i = below(6); i > 0; --i) r.ids.push_back(static_cast<std::int32_t>(rng_()));
        for (int i = below(20); i > 0; --i) r.flags.push_back(below(2) == 1);
        for (int i = below(3); i > 0; --i) {
            auto& values = r.series[text(below(4))];
            for (int j = below(4); j > 0; --j)
                values.push_back(static_cast<std::int64_t>(rng_()) << 20);
        }
        switch (below(5)) {
            case 0: break;
            case 1: r.tag.emplace(std::monostate{}); break;
            case 2: r.tag.emplace(std::int64_t{-5} * below(1000)); break;
            case 3: r.tag.emplace(text(below(8))); break;
            default: r.tag.emplace(Sample{below(100), 0.5f * below(10)}); break;
        }
        for (int i = below(3); i > 0; --i)
            r.labels.emplace_back(static_cast<std::uint8_t>(below(256)),
                                  std::u16string(below(4), u'\u00e9'));
        for (int i = below(5); i > 0; --i) r.seen.insert(static_cast<std::int16_t>(below(1000)));
        for (int i = below(3); i > 0; --i)
            r.items.emplace_back(
                below(2) == 1, static_cast<char>('a' + below(26)),
                std::array<std::uint16_t, 3>{1, static_cast<std::uint16_t>(below(9)), 3});
        if (below(2) == 1) r.empties.insert({});
        for (int i = below(4); i > 0; --i) r.samples.push_back({below(50), 1.0f / (1 + below(7))});
        r.age = std::chrono::milliseconds(below(100000));
        if (depth > 0)
            for (int i = below(3); i > 0; --i) r.children.push_back(record(depth - 1));
        return r;
    }

    int below(int n) { return static_cast<int>(rng_() % static_cast<std::uint32_t>(n)); }

    std::mt19937& rng() { return rng_; }

private:
    std::string text(int n) {
        std::string s;
        for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + below(26)));
        return s;
    }

    std::mt19937 rng_;
};

// One random change to `bytes`.
void mutate(Bytes& bytes, Generator& gen) {
    auto position = [&](std::size_t size) {
        return size == 0 ? std::size_t{0}
                         : static_cast<std::size_t>(gen.below(static_cast<int>(size)));
    };
    auto random_byte = [&] { return static_cast<std::byte>(gen.below(256)); };
    // Bytes that decoders find interesting: varint continuations, counts, bool/flag/index edges.
    static constexpr std::array<std::uint8_t, 10> special = {0x00, 0x01, 0x02, 0x7f, 0x80,
                                                             0x81, 0xfe, 0xff, 0x10, 0x40};
    switch (gen.below(8)) {
        case 0:  // flip one bit
            if (!bytes.empty())
                bytes[position(bytes.size())] ^= static_cast<std::byte>(1u << gen.below(8));
            break;
        case 1:  // truncate
            bytes.resize(position(bytes.size() + 1));
            break;
        case 2:  // insert random bytes
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(position(bytes.size() + 1)),
                         static_cast<std::size_t>(1 + gen.below(4)), random_byte());
            break;
        case 3:  // overwrite with a random byte
            if (!bytes.empty()) bytes[position(bytes.size())] = random_byte();
            break;
        case 4:  // overwrite with a special byte
            if (!bytes.empty())
                bytes[position(bytes.size())] = static_cast<std::byte>(
                    special[static_cast<std::size_t>(gen.below(special.size()))]);
            break;
        case 5: {  // erase a range
            if (bytes.empty()) break;
            const std::size_t from = position(bytes.size());
            const std::size_t count = std::min<std::size_t>(bytes.size() - from, 1 + gen.below(8));
            bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(from),
                        bytes.begin() + static_cast<std::ptrdiff_t>(from + count));
            break;
        }
        case 6: {  // duplicate a range
            if (bytes.empty()) break;
            const std::size_t from = position(bytes.size());
            const std::size_t count = std::min<std::size_t>(bytes.size() - from, 1 + gen.below(16));
            const Bytes chunk(bytes.begin() + static_cast<std::ptrdiff_t>(from),
                              bytes.begin() + static_cast<std::ptrdiff_t>(from + count));
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(position(bytes.size() + 1)),
                         chunk.begin(), chunk.end());
            break;
        }
        default: {  // plant a large varint (a hostile count or length)
            Bytes varint;
            mproc::Encoder(varint).write_varint(std::uint64_t{1} << gen.below(64));
            const std::size_t at = position(bytes.size() + 1);
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), varint.begin(),
                         varint.end());
            break;
        }
    }
}

std::string hex(const Bytes& bytes) {
    std::ostringstream out;
    out << std::hex;
    for (std::byte b : bytes) out << static_cast<int>(b) << ' ';
    return out.str();
}

// Decodes `bytes` as T: success or DecodeError are both fine, anything else is a failure. A value
// that decodes must encode again and decode back to itself.
template <class T>
bool decode_is_well_behaved(const Bytes& bytes, int& decoded_count) {
    try {
        const T value = mproc::loads<T>(bytes);
        ++decoded_count;
        const T again = mproc::loads<T>(mproc::dumps(value));
        if (!(again == value)) {
            ADD_FAILURE() << "re-encoding a decoded value changed it; input: " << hex(bytes);
            return false;
        }
    } catch (const mproc::DecodeError&) {
    } catch (const std::exception& e) {
        ADD_FAILURE() << "unexpected exception " << typeid(e).name() << ": " << e.what()
                      << "\ninput: " << hex(bytes);
        return false;
    }
    return true;
}

TEST(CodecFuzz, MutatedRecordsDecodeOrThrowDecodeError) {
    Generator gen(20240611);
    std::vector<Bytes> corpus;
    for (int i = 0; i < 16; ++i) {
        const Record r = gen.record(2);
        corpus.push_back(mproc::dumps(r));
        ASSERT_EQ(mproc::loads<Record>(corpus.back()), r);
    }
    int decoded = 0;
    for (int iteration = 0; iteration < 20000; ++iteration) {
        Bytes bytes = corpus[static_cast<std::size_t>(gen.below(static_cast<int>(corpus.size())))];
        for (int m = 1 + gen.below(4); m > 0; --m) mutate(bytes, gen);
        if (!decode_is_well_behaved<Record>(bytes, decoded)) break;
    }
    // Some mutations (a flipped bit in a number, say) leave a valid encoding: both outcomes ran.
    EXPECT_GT(decoded, 0);
}

TEST(CodecFuzz, RandomBytesAsManyTypes) {
    Generator gen(7);
    int decoded = 0;
    for (int iteration = 0; iteration < 2000; ++iteration) {
        Bytes bytes(static_cast<std::size_t>(gen.below(48)));
        for (std::byte& b : bytes) b = static_cast<std::byte>(gen.below(256));
        bool ok =
            decode_is_well_behaved<Record>(bytes, decoded) &&
            decode_is_well_behaved<std::vector<std::string>>(bytes, decoded) &&
            decode_is_well_behaved<std::map<std::int32_t, std::optional<bool>>>(bytes, decoded) &&
            decode_is_well_behaved<std::variant<std::monostate, std::vector<bool>, std::u32string>>(
                bytes, decoded) &&
            decode_is_well_behaved<
                std::tuple<std::uint8_t, std::deque<std::tuple<>>, std::set<char>>>(bytes,
                                                                                    decoded) &&
            decode_is_well_behaved<std::unordered_map<std::string, std::list<Sample>>>(bytes,
                                                                                       decoded);
        if (!ok) break;
    }
    EXPECT_GT(decoded, 0);
}

TEST(CodecFuzz, MutatedSmallValuesOfEveryShape) {
    Generator gen(99);
    const std::vector<Bytes> seeds = {
        mproc::dumps(std::vector<std::vector<bool>>{{true}, {}, {false, true, true}}),
        mproc::dumps(std::map<std::string, std::variant<int, std::string>>{
            {"a", 1}, {"b", std::string("x")}}),
        mproc::dumps(std::optional<std::tuple<bool, std::u16string>>{
            std::tuple{true, std::u16string(u"hi")}}),
    };
    int decoded = 0;
    for (int iteration = 0; iteration < 6000; ++iteration) {
        Bytes bytes = seeds[static_cast<std::size_t>(iteration % 3)];
        for (int m = 1 + gen.below(3); m > 0; --m) mutate(bytes, gen);
        bool ok = false;
        switch (iteration % 3) {
            case 0:
                ok = decode_is_well_behaved<std::vector<std::vector<bool>>>(bytes, decoded);
                break;
            case 1:
                ok = decode_is_well_behaved<std::map<std::string, std::variant<int, std::string>>>(
                    bytes, decoded);
                break;
            default:
                ok = decode_is_well_behaved<std::optional<std::tuple<bool, std::u16string>>>(
                    bytes, decoded);
                break;
        }
        if (!ok) break;
    }
    EXPECT_GT(decoded, 0);
}

}  // namespace
