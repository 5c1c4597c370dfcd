// Tests for mproc/codec.hpp: round trips of every supported type, user types through cereal's
// conventions, the exact wire format, the compile-time Encodable check, and every decode error
// (truncation, corruption, hostile counts and depths). The randomized mutation test is in
// codec_fuzz_test.cpp.
#include "mproc/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

namespace {

using Bytes = std::vector<std::byte>;

Bytes bytes_of(std::initializer_list<int> values) {
    Bytes out;
    for (int v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

Bytes varint_bytes(std::uint64_t value) {
    Bytes out;
    mproc::Encoder(out).write_varint(value);
    return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
}

// Round trip through dumps/loads, and the re-encoding of the decoded value gives the same bytes.
template <class T>
T round_trip(const T& value) {
    const Bytes encoded = mproc::dumps(value);
    T decoded = mproc::loads<T>(encoded);
    EXPECT_EQ(mproc::dumps(decoded), encoded);
    return decoded;
}

template <class T>
void expect_round_trip(const T& value) {
    EXPECT_EQ(round_trip(value), value);
}

// Decoding `bytes` as T throws DecodeError whose message contains `expected`.
template <class T>
void expect_decode_error(const Bytes& bytes, const std::string& expected) {
    try {
        (void)mproc::loads<T>(bytes);
        ADD_FAILURE() << "no DecodeError; expected one containing: " << expected;
    } catch (const mproc::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find(expected), std::string::npos)
            << "message: " << e.what() << "\nexpected to contain: " << expected;
        EXPECT_EQ(std::string(e.what()).rfind("mproc codec: ", 0), 0u) << e.what();
    }
}

// Every strict prefix of a valid encoding is rejected with DecodeError (the encoding is
// self-delimiting, so no prefix is itself a complete value), and so is one extra byte.
template <class T>
void expect_every_truncation_rejected(const T& value) {
    const Bytes encoded = mproc::dumps(value);
    for (std::size_t cut = 0; cut < encoded.size(); ++cut) {
        const std::span<const std::byte> prefix(encoded.data(), cut);
        EXPECT_THROW((void)mproc::loads<T>(prefix), mproc::DecodeError) << "cut at " << cut;
    }
    Bytes longer = encoded;
    longer.push_back(std::byte{0});
    EXPECT_THROW((void)mproc::loads<T>(longer), mproc::DecodeError);
}

// ---------------------------------------------------------------------------------------------
// Types used by the tests.

enum class Color : std::uint8_t { red, green, blue };
enum Wide : std::int64_t { wide_min = std::numeric_limits<std::int64_t>::min(), wide_one = 1 };
enum class Flag : bool { off, on };
enum Unfixed { unfixed_a, unfixed_b };

struct Point {  // trivially copyable, no serialize: the plain-copy path
    std::int32_t x;
    float y;
    friend bool operator==(const Point&, const Point&) = default;
};

struct Tag {  // empty: takes no bytes
    friend bool operator==(const Tag&, const Tag&) = default;
};

struct Member {  // member serialize, names through make_nvp / CEREAL_NVP
    std::string name;
    std::vector<int> values;
    std::optional<double> limit;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("name", name), CEREAL_NVP(values), limit);
    }
    friend bool operator==(const Member&, const Member&) = default;
};

namespace user {
struct NonMember {  // non-member serialize found by argument-dependent lookup
    int a = 0;
    std::string b;
    friend bool operator==(const NonMember&, const NonMember&) = default;
};
template <class Archive>
void serialize(Archive& ar, NonMember& value) {
    ar(value.a, value.b);
}

struct NonMemberSaveLoad {
    std::map<std::string, int> counts;
    friend bool operator==(const NonMemberSaveLoad&, const NonMemberSaveLoad&) = default;
};
template <class Archive>
void save(Archive& ar, const NonMemberSaveLoad& value) {
    ar(value.counts);
}
template <class Archive>
void load(Archive& ar, NonMemberSaveLoad& value) {
    ar(value.counts);
}
}  // namespace user

class SaveLoad {  // member save/load, using the stream-like operators
public:
    SaveLoad() = default;
    explicit SaveLoad(std::string text) : text_(std::move(text)), length_(text_.size()) {}
    template <class Archive>
    void save(Archive& ar) const {
        ar << text_;
    }
    template <class Archive>
    void load(Archive& ar) {
        ar >> text_;
        length_ = text_.size();  // derived state rebuilt on load, not sent
    }
    std::size_t length() const { return length_; }
    friend bool operator==(const SaveLoad&, const SaveLoad&) = default;

private:
    std::string text_;
    std::size_t length_ = 0;
};

class Private {  // private members and a private serialize, reached through cereal::access
public:
    Private() = default;
    Private(int a, std::string b) : a_(a), b_(std::move(b)) {}
    friend bool operator==(const Private&, const Private&) = default;

private:
    friend class cereal::access;
    template <class Archive>
    void serialize(Archive& ar) {
        ar& a_& b_;
    }
    int a_ = 0;
    std::string b_;
};

struct Base {
    int base_value = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(base_value);
    }
    friend bool operator==(const Base&, const Base&) = default;
};

struct Derived : Base {
    std::string extra;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::base_class<Base>(this), extra);
    }
    friend bool operator==(const Derived&, const Derived&) = default;
};

struct VirtualLeft : virtual Base {
    int left = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::virtual_base_class<Base>(this), left);
    }
};

// A trivially copyable base with a user-provided constructor is not "POD for layout" in the
// Itanium ABI, so the derived class may place its members in the base's tail padding.
struct PaddedBase {
    PaddedBase() {}
    std::int32_t a = 0;
    char b = 0;
};
struct PackedDerived : PaddedBase {
    char c = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::base_class<PaddedBase>(this), c);
    }
};

struct Versioned {
    int value = 0;
    std::uint32_t loaded_version = 0;
    template <class Archive>
    void serialize(Archive& ar, const std::uint32_t version) {
        ar(value);
        loaded_version = version;
    }
};

struct Celsius {  // save_minimal / load_minimal: travels as one double
    double degrees = 0;
    template <class Archive>
    double save_minimal(const Archive&) const {
        return degrees;
    }
    template <class Archive>
    void load_minimal(const Archive&, const double& value) {
        degrees = value;
    }
    friend bool operator==(const Celsius&, const Celsius&) = default;
};

// The escape hatch for an enum without a fixed underlying type: validate in load_minimal.
enum Legacy { legacy_a, legacy_b, legacy_c };
template <class Archive>
int save_minimal(const Archive&, const Legacy& value) {
    return static_cast<int>(value);
}
template <class Archive>
void load_minimal(const Archive&, Legacy& value, const int& stored) {
    if (stored < legacy_a || stored > legacy_c) throw mproc::DecodeError("bad Legacy value");
    value = static_cast<Legacy>(stored);
}

struct TriviallyCopyableWithSerialize {  // has serialize: goes through it, not through memcpy
    std::int32_t sent = 0;
    std::int32_t not_sent = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(sent);
    }
};

// A user container written the way cereal's own container support is: a size tag, then the
// elements as one block of binary data.
struct Samples {
    std::vector<std::uint16_t> data;
    template <class Archive>
    void save(Archive& ar) const {
        ar(cereal::make_size_tag(static_cast<std::uint32_t>(data.size())));
        ar(cereal::binary_data(data.data(), data.size() * sizeof(std::uint16_t)));
    }
    template <class Archive>
    void load(Archive& ar) {
        std::uint32_t size = 0;
        ar(cereal::make_size_tag(size));
        data.resize(size);
        ar(cereal::binary_data(data.data(), data.size() * sizeof(std::uint16_t)));
    }
    friend bool operator==(const Samples&, const Samples&) = default;
};

struct Node {  // recursive through a vector of itself
    int value = 0;
    std::vector<Node> children;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value, children);
    }
    friend bool operator==(const Node&, const Node&) = default;
};

struct Bare {  // recursive with nothing but the vector: one byte per level
    std::vector<Bare> children;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(children);
    }
};

struct WritesNothing {
    template <class Archive>
    void serialize(Archive&) {}
};

struct ThrowsOnCopy {
    ThrowsOnCopy() = default;
    ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy"); }
    ThrowsOnCopy& operator=(const ThrowsOnCopy&) = default;
    template <class Archive>
    void serialize(Archive&) {}
};

// Types the codec must refuse at compile time.
struct NotTriviallyCopyable {
    std::string s;
};
struct Ambiguous {
    int x = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(x);
    }
    template <class Archive>
    void save(Archive& ar) const {
        ar(x);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(x);
    }
};
struct SaveOnly {
    int x = 0;
    template <class Archive>
    void save(Archive& ar) const {
        ar(x);
    }
};
struct NoDefault {
    explicit NoDefault(int value) : value(value) {}
    int value;
};

// An allocator that records its largest request, to check the decoder's reservations.
struct AllocationLog {
    std::size_t largest = 0;
};
AllocationLog allocation_log;

template <class T>
struct LoggingAllocator {
    using value_type = T;
    LoggingAllocator() = default;
    template <class U>
    LoggingAllocator(const LoggingAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        allocation_log.largest = std::max(allocation_log.largest, n * sizeof(T));
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
    template <class U>
    bool operator==(const LoggingAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace

CEREAL_CLASS_VERSION(Versioned, 3)

namespace {

// ---------------------------------------------------------------------------------------------
// The Encodable concept.

static_assert(mproc::Encodable<int>);
static_assert(mproc::Encodable<bool>);
static_assert(mproc::Encodable<std::byte>);
static_assert(mproc::Encodable<Color>);
static_assert(mproc::Encodable<Flag>);
static_assert(mproc::Encodable<std::string>);
static_assert(mproc::Encodable<std::vector<bool>>);
static_assert(mproc::Encodable<std::array<Point, 3>>);
static_assert(mproc::Encodable<int[4]>);
static_assert(mproc::Encodable<std::map<std::string, std::vector<std::optional<Point>>>>);
static_assert(mproc::Encodable<std::variant<std::monostate, int, std::string>>);
static_assert(mproc::Encodable<std::tuple<>>);
static_assert(mproc::Encodable<std::chrono::nanoseconds>);
static_assert(mproc::Encodable<std::chrono::system_clock::time_point>);
static_assert(mproc::Encodable<Member>);
static_assert(mproc::Encodable<user::NonMember>);
static_assert(mproc::Encodable<SaveLoad>);
static_assert(mproc::Encodable<Private>);
static_assert(mproc::Encodable<Celsius>);
static_assert(mproc::Encodable<Legacy>);  // through its save_minimal/load_minimal
static_assert(mproc::Encodable<Node>);
static_assert(mproc::Encodable<std::vector<Node>>);

// The diagnosing form other headers use: true here, a readable static_assert otherwise.
static_assert(mproc::assert_encodable<std::vector<Member>>());
static_assert(mproc::assert_encodable<std::tuple<Point, Celsius, std::optional<Color>>>());

static_assert(!mproc::Encodable<int*>);
static_assert(!mproc::Encodable<const char*>);
static_assert(!mproc::Encodable<std::nullptr_t>);
static_assert(!mproc::Encodable<int Point::*>);
static_assert(!mproc::Encodable<int&>);
static_assert(!mproc::Encodable<const int>);
static_assert(!mproc::Encodable<std::string_view>);
static_assert(!mproc::Encodable<std::span<int>>);
static_assert(!mproc::Encodable<std::reference_wrapper<int>>);
static_assert(!mproc::Encodable<std::unique_ptr<int>>);
static_assert(!mproc::Encodable<std::shared_ptr<int>>);
static_assert(!mproc::Encodable<std::function<void()>>);
static_assert(!mproc::Encodable<NotTriviallyCopyable>);
static_assert(!mproc::Encodable<Unfixed>);
static_assert(!mproc::Encodable<Ambiguous>);
static_assert(!mproc::Encodable<SaveOnly>);
static_assert(!mproc::Encodable<NoDefault>);
static_assert(!mproc::Encodable<std::vector<int*>>);
static_assert(!mproc::Encodable<std::map<std::string, std::string_view>>);
static_assert(!mproc::Encodable<std::optional<NotTriviallyCopyable>>);
static_assert(!mproc::Encodable<std::variant<int, NoDefault>>);
static_assert(!mproc::Encodable<std::vector<std::pair<const int, int>>>);

// ---------------------------------------------------------------------------------------------
// Round trips.

TEST(CodecRoundTrip, Arithmetic) {
    expect_round_trip(true);
    expect_round_trip(false);
    expect_round_trip('x');
    expect_round_trip(static_cast<signed char>(-5));
    expect_round_trip(static_cast<unsigned char>(250));
    expect_round_trip(std::numeric_limits<std::int8_t>::min());
    expect_round_trip(std::numeric_limits<std::int16_t>::min());
    expect_round_trip(std::numeric_limits<std::int32_t>::min());
    expect_round_trip(std::numeric_limits<std::int64_t>::min());
    expect_round_trip(std::numeric_limits<std::uint64_t>::max());
    expect_round_trip(std::numeric_limits<std::uint32_t>::max());
    expect_round_trip(u8'a');
    expect_round_trip(u'\u20ac');
    expect_round_trip(U'\U0001F600');
    expect_round_trip(L'w');
    expect_round_trip(3.5f);
    expect_round_trip(-0.0);
    expect_round_trip(std::numeric_limits<double>::infinity());
    expect_round_trip(std::numeric_limits<double>::denorm_min());
    // long double carries padding bytes, which need not survive a copy: compare values only.
    EXPECT_EQ(mproc::loads<long double>(mproc::dumps(1.25L)), 1.25L);
    expect_round_trip(std::byte{0xab});
}

TEST(CodecRoundTrip, NanKeepsItsBits) {
    const double nan = std::bit_cast<double>(std::uint64_t{0x7ff800000000beefULL});
    const double decoded = mproc::loads<double>(mproc::dumps(nan));
    EXPECT_TRUE(std::isnan(decoded));
    EXPECT_EQ(std::bit_cast<std::uint64_t>(decoded), 0x7ff800000000beefULL);
}

TEST(CodecRoundTrip, Enums) {
    expect_round_trip(Color::blue);
    expect_round_trip(wide_min);
    expect_round_trip(Flag::on);
    expect_round_trip(Flag::off);
    EXPECT_EQ(mproc::dumps(Color::green), bytes_of({1}));
    EXPECT_EQ(mproc::dumps(Flag::on), bytes_of({1}));
}

TEST(CodecRoundTrip, Strings) {
    expect_round_trip(std::string());
    expect_round_trip(std::string("hello"));
    expect_round_trip(std::string("nul\0inside", 10));
    expect_round_trip(std::string(1 << 20, 'z'));
    expect_round_trip(std::u16string(u"\u00e9t\u00e9"));
    expect_round_trip(std::u32string(U"\U0001F600!"));
    expect_round_trip(std::wstring(L"wide"));
    // (gtest as packaged cannot print a u8string, so no EXPECT_EQ on one.)
    const std::u8string u8 = u8"utf-8";
    EXPECT_TRUE(mproc::loads<std::u8string>(mproc::dumps(u8)) == u8);
    expect_round_trip(std::basic_string<unsigned char>{1, 2, 3});
}

TEST(CodecRoundTrip, Sequences) {
    expect_round_trip(std::vector<int>{});
    expect_round_trip(std::vector<std::int32_t>{1, -2, 3});
    expect_round_trip(std::vector<double>{0.5, 1e300});
    expect_round_trip(std::vector<std::string>{"a", "", "ccc"});
    expect_round_trip(std::vector<Point>{{1, 2.5f}, {-3, 0.0f}});
    expect_round_trip(std::deque<int>{4, 5, 6});
    expect_round_trip(std::list<std::string>{"x", "y"});
    expect_round_trip(std::forward_list<int>{7, 8, 9});
    expect_round_trip(std::forward_list<int>{});
    expect_round_trip(std::vector<std::byte>{std::byte{0}, std::byte{255}});
    expect_round_trip(std::vector<Color>{Color::red, Color::blue});
    expect_round_trip(std::vector<Flag>{Flag::on, Flag::off});
}

TEST(CodecRoundTrip, VectorBool) {
    for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 100u}) {
        std::vector<bool> bits(n);
        for (std::size_t i = 0; i < n; ++i) bits[i] = (i * 7 + 3) % 5 < 2;
        expect_round_trip(bits);
        EXPECT_EQ(mproc::dumps(bits).size(), varint_bytes(n).size() + (n + 7) / 8);
    }
}

TEST(CodecRoundTrip, FixedArrays) {
    expect_round_trip(std::array<int, 3>{1, 2, 3});
    expect_round_trip(std::array<int, 0>{});
    expect_round_trip(std::array<std::string, 2>{"a", "b"});
    expect_round_trip(std::array<bool, 3>{true, false, true});
    expect_round_trip(std::array<std::array<std::uint8_t, 2>, 2>{{{1, 2}, {3, 4}}});
    EXPECT_TRUE(mproc::dumps(std::array<int, 0>{}).empty());
}

TEST(CodecRoundTrip, CArrayThroughTheDecoder) {
    const int values[3] = {1, 2, 3};
    Bytes out;
    mproc::Encoder(out).write(values);
    EXPECT_EQ(out.size(), sizeof values);
    int decoded[3] = {};
    mproc::Decoder decoder(out);
    decoder.read_into(decoded);
    EXPECT_TRUE(decoder.at_end());
    EXPECT_EQ(decoded[2], 3);
}

TEST(CodecRoundTrip, Associative) {
    expect_round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
    expect_round_trip(std::map<int, std::string, std::greater<>>{{1, "one"}, {2, "two"}});
    expect_round_trip(std::multimap<int, int>{{1, 1}, {1, 2}, {1, 3}, {0, 9}});
    expect_round_trip(std::set<std::string>{"x", "y"});
    expect_round_trip(std::multiset<int>{3, 3, 1});
    // Unordered containers compare by content; their bytes may differ in order after a round trip.
    const std::unordered_map<std::string, std::vector<int>> um{{"k", {1}}, {"l", {}}};
    EXPECT_EQ(mproc::loads<std::remove_cvref_t<decltype(um)>>(mproc::dumps(um)), um);
    const std::unordered_multimap<int, int> umm{{1, 1}, {1, 2}, {2, 3}};
    EXPECT_EQ(mproc::loads<std::remove_cvref_t<decltype(umm)>>(mproc::dumps(umm)), umm);
    const std::unordered_set<int> us{1, 2, 3, 40};
    EXPECT_EQ(mproc::loads<std::remove_cvref_t<decltype(us)>>(mproc::dumps(us)), us);
    const std::unordered_multiset<std::string> ums{"a", "a", "b"};
    EXPECT_EQ(mproc::loads<std::remove_cvref_t<decltype(ums)>>(mproc::dumps(ums)), ums);
}

TEST(CodecRoundTrip, ProductsAndSums) {
    expect_round_trip(std::pair<int, std::string>{1, "one"});
    expect_round_trip(std::tuple<int, double, std::string, bool>{1, 2.0, "three", true});
    expect_round_trip(std::tuple<>{});
    expect_round_trip(std::optional<int>{});
    expect_round_trip(std::optional<int>{42});
    expect_round_trip(std::optional<std::optional<int>>{std::optional<int>{}});
    expect_round_trip(std::optional<std::optional<int>>{});
    expect_round_trip(std::variant<int, std::string>{std::string("s")});
    expect_round_trip(std::variant<std::monostate, int>{});
    // Alternatives of the same type are told apart by index.
    const std::variant<int, int> second(std::in_place_index<1>, 5);
    const auto decoded = mproc::loads<std::variant<int, int>>(mproc::dumps(second));
    EXPECT_EQ(decoded.index(), 1u);
    EXPECT_EQ(std::get<1>(decoded), 5);
    expect_round_trip(std::monostate{});
    expect_round_trip(Tag{});
    EXPECT_TRUE(mproc::dumps(std::monostate{}).empty());
    EXPECT_TRUE(mproc::dumps(std::tuple<>{}).empty());
    EXPECT_TRUE(mproc::dumps(Tag{}).empty());
}

TEST(CodecRoundTrip, Chrono) {
    using namespace std::chrono;
    expect_round_trip(milliseconds(-1234));
    expect_round_trip(duration<double>(0.25));
    expect_round_trip(nanoseconds::max());
    expect_round_trip(system_clock::now());
    expect_round_trip(steady_clock::now());
    EXPECT_EQ(mproc::dumps(seconds(1)), mproc::dumps(seconds(1).count()));
}

TEST(CodecRoundTrip, DeepNesting) {
    using Inner = std::variant<int, std::string, std::vector<std::pair<int, double>>>;
    using Value = std::map<std::string, std::vector<std::optional<Inner>>>;
    Value value;
    value["a"] = {std::nullopt, Inner{7}, Inner{std::string("s")}};
    value["b"] = {Inner{std::vector<std::pair<int, double>>{{1, 1.5}, {2, 2.5}}}};
    value["c"] = {};
    expect_round_trip(value);

    std::vector<std::vector<std::vector<std::deque<std::list<std::set<int>>>>>> nested(2);
    nested[1].resize(1);
    nested[1][0].push_back({{{1, 2}, {}}, {{3}}});
    expect_round_trip(nested);

    std::tuple<std::array<std::optional<std::tuple<Point, Color, std::u16string>>, 2>,
               std::unordered_map<int, std::vector<bool>>, std::chrono::seconds>
        mixed{{std::nullopt, std::tuple<Point, Color, std::u16string>{{1, 2}, Color::green, u"x"}},
              {{1, {true, false}}},
              std::chrono::seconds(3)};
    EXPECT_EQ(mproc::loads<decltype(mixed)>(mproc::dumps(mixed)), mixed);
}

// ---------------------------------------------------------------------------------------------
// User types.

TEST(CodecUserTypes, MemberSerializeWithNames) {
    expect_round_trip(Member{"n", {1, 2, 3}, 4.5});
    expect_round_trip(Member{});
    // Names are dropped: the bytes are those of the three members in order.
    EXPECT_EQ(mproc::dumps(Member{"n", {1}, std::nullopt}),
              concat({mproc::dumps(std::string("n")), mproc::dumps(std::vector<int>{1}),
                      mproc::dumps(std::optional<double>{})}));
}

TEST(CodecUserTypes, NonMemberSerialize) {
    expect_round_trip(user::NonMember{3, "three"});
}

TEST(CodecUserTypes, SaveAndLoad) {
    const SaveLoad decoded = round_trip(SaveLoad("abcd"));
    EXPECT_EQ(decoded, SaveLoad("abcd"));
    EXPECT_EQ(decoded.length(), 4u);
    expect_round_trip(user::NonMemberSaveLoad{{{"a", 1}, {"b", 2}}});
}

TEST(CodecUserTypes, PrivateMembersThroughCerealAccess) {
    expect_round_trip(Private(7, "seven"));
}

TEST(CodecUserTypes, BaseClass) {
    Derived d;
    d.base_value = 11;
    d.extra = "more";
    expect_round_trip(d);
    EXPECT_EQ(mproc::dumps(d), concat({mproc::dumps(11), mproc::dumps(std::string("more"))}));

    VirtualLeft v;
    v.base_value = 5;
    v.left = 6;
    const auto decoded = mproc::loads<VirtualLeft>(mproc::dumps(v));
    EXPECT_EQ(decoded.base_value, 5);
    EXPECT_EQ(decoded.left, 6);
}

TEST(CodecUserTypes, PlainBaseDoesNotClobberMembersInItsTailPadding) {
    PackedDerived value;
    value.a = 1;
    value.b = 2;
    value.c = 3;
    const auto decoded = mproc::loads<PackedDerived>(mproc::dumps(value));
    EXPECT_EQ(decoded.a, 1);
    EXPECT_EQ(decoded.b, 2);
    EXPECT_EQ(decoded.c, 3);
    // The layout this test is about: c lives inside PaddedBase's sizeof.
    const auto offset_of_c = reinterpret_cast<const char*>(&value.c) -
                             reinterpret_cast<const char*>(static_cast<const PaddedBase*>(&value));
    EXPECT_LT(static_cast<std::size_t>(offset_of_c), sizeof(PaddedBase));
}

TEST(CodecUserTypes, VersionTravelsWithTheValue) {
    Versioned v;
    v.value = 9;
    const Bytes encoded = mproc::dumps(v);
    EXPECT_EQ(encoded, concat({varint_bytes(3), mproc::dumps(9)}));
    const auto decoded = mproc::loads<Versioned>(encoded);
    EXPECT_EQ(decoded.value, 9);
    EXPECT_EQ(decoded.loaded_version, 3u);
    // A version stored by an older writer reaches the reader's serialize().
    EXPECT_EQ(mproc::loads<Versioned>(concat({varint_bytes(1), mproc::dumps(9)})).loaded_version,
              1u);
}

TEST(CodecUserTypes, SaveMinimal) {
    expect_round_trip(Celsius{21.5});
    EXPECT_EQ(mproc::dumps(Celsius{21.5}), mproc::dumps(21.5));
    expect_round_trip(legacy_c);
    EXPECT_THROW((void)mproc::loads<Legacy>(mproc::dumps(7)), mproc::DecodeError);
}

TEST(CodecUserTypes, SerializeWinsOverPlainCopy) {
    TriviallyCopyableWithSerialize value;
    value.sent = 5;
    value.not_sent = 6;
    const Bytes encoded = mproc::dumps(value);
    EXPECT_EQ(encoded, mproc::dumps(std::int32_t{5}));
    const auto decoded = mproc::loads<TriviallyCopyableWithSerialize>(encoded);
    EXPECT_EQ(decoded.sent, 5);
    EXPECT_EQ(decoded.not_sent, 0);
}

TEST(CodecUserTypes, SizeTagAndBinaryData) {
    expect_round_trip(Samples{{1, 2, 65535}});
    expect_round_trip(Samples{});
    EXPECT_EQ(mproc::dumps(Samples{{1, 2}}), bytes_of({2, 1, 0, 2, 0}));
    // A size tag larger than the input left is refused before load() can allocate for it.
    expect_decode_error<Samples>(concat({varint_bytes(std::uint64_t{1} << 31), bytes_of({1, 2})}),
                                 "element count 2147483648 exceeds the 2 bytes left");
}

TEST(CodecUserTypes, RecursiveTree) {
    Node tree{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}};
    expect_round_trip(tree);
    expect_round_trip(std::vector<Node>{tree, tree});
}

TEST(CodecUserTypes, EncodingPastTheDepthLimitIsAUsageError) {
    auto chain = [](std::size_t depth) {
        Bare root;
        Bare* at = &root;
        for (std::size_t i = 1; i < depth; ++i) {
            at->children.emplace_back();
            at = &at->children.back();
        }
        return root;
    };
    const Bare deepest_allowed = chain(mproc::kCodecMaxDepth);
    const Bytes encoded = mproc::dumps(deepest_allowed);
    EXPECT_EQ(encoded.size(), mproc::kCodecMaxDepth);
    EXPECT_NO_THROW((void)mproc::loads<Bare>(encoded));
    EXPECT_THROW((void)mproc::dumps(chain(mproc::kCodecMaxDepth + 1)), mproc::UsageError);
}

// ---------------------------------------------------------------------------------------------
// The wire format.

TEST(CodecWireFormat, Varints) {
    struct Case {
        std::uint64_t value;
        Bytes bytes;
    };
    const Case cases[] = {
        {0, bytes_of({0x00})},
        {1, bytes_of({0x01})},
        {127, bytes_of({0x7f})},
        {128, bytes_of({0x80, 0x01})},
        {300, bytes_of({0xac, 0x02})},
        {16383, bytes_of({0xff, 0x7f})},
        {16384, bytes_of({0x80, 0x80, 0x01})},
        {std::uint64_t{1} << 32, bytes_of({0x80, 0x80, 0x80, 0x80, 0x10})},
        {std::uint64_t{1} << 63,
         bytes_of({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})},
        {std::numeric_limits<std::uint64_t>::max(),
         bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})},
    };
    for (const Case& c : cases) {
        EXPECT_EQ(varint_bytes(c.value), c.bytes) << c.value;
        mproc::Decoder decoder(c.bytes);
        EXPECT_EQ(decoder.read_varint(), c.value);
        EXPECT_TRUE(decoder.at_end());
    }
}

TEST(CodecWireFormat, Scalars) {
    EXPECT_EQ(mproc::dumps(std::int32_t{1}), bytes_of({1, 0, 0, 0}));
    EXPECT_EQ(mproc::dumps(std::int16_t{-2}), bytes_of({0xfe, 0xff}));
    EXPECT_EQ(mproc::dumps(true), bytes_of({1}));
    EXPECT_EQ(mproc::dumps(false), bytes_of({0}));
    EXPECT_EQ(mproc::dumps(1.0), bytes_of({0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));
    EXPECT_EQ(mproc::dumps(Point{1, 0.0f}), bytes_of({1, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(CodecWireFormat, ContiguousRangesAreOneCountAndOneCopy) {
    for (std::size_t n : {0u, 1u, 127u, 128u, 1000u, 20000u}) {
        std::vector<std::int32_t> values(n, 7);
        EXPECT_EQ(mproc::dumps(values).size(), varint_bytes(n).size() + 4 * n) << n;
        EXPECT_EQ(mproc::dumps(std::string(n, 'c')).size(), varint_bytes(n).size() + n) << n;
        EXPECT_EQ(mproc::dumps(std::u16string(n, u'c')).size(), varint_bytes(n).size() + 2 * n);
        EXPECT_EQ(mproc::dumps(std::vector<Point>(n)).size(),
                  varint_bytes(n).size() + sizeof(Point) * n);
    }
    EXPECT_EQ(mproc::dumps(std::vector<std::int32_t>{1, 2}), bytes_of({2, 1, 0, 0, 0, 2, 0, 0, 0}));
    EXPECT_EQ(mproc::dumps(std::array<std::int16_t, 3>{1, 2, 3}), bytes_of({1, 0, 2, 0, 3, 0}));
    EXPECT_EQ(mproc::dumps(std::string("abc")), bytes_of({3, 'a', 'b', 'c'}));
}

TEST(CodecWireFormat, Structures) {
    EXPECT_EQ(
        mproc::dumps(std::vector<bool>{true, false, true, true, false, false, false, false, true}),
        bytes_of({9, 0x0d, 0x01}));
    EXPECT_EQ(mproc::dumps(std::optional<std::int16_t>{}), bytes_of({0}));
    EXPECT_EQ(mproc::dumps(std::optional<std::int16_t>{5}), bytes_of({1, 5, 0}));
    EXPECT_EQ(mproc::dumps(std::variant<std::int8_t, std::string>{std::string("x")}),
              bytes_of({1, 1, 'x'}));
    EXPECT_EQ(mproc::dumps(std::map<std::uint8_t, std::uint8_t>{{1, 2}, {3, 4}}),
              bytes_of({2, 1, 2, 3, 4}));
    EXPECT_EQ(mproc::dumps(std::pair<std::uint8_t, bool>{9, true}), bytes_of({9, 1}));
    EXPECT_EQ(mproc::dumps(std::list<std::string>{"a", "bc"}), bytes_of({2, 1, 'a', 2, 'b', 'c'}));
}

TEST(CodecWireFormat, EncoderAndDecoderFrameSeveralValues) {
    Bytes buffer;
    mproc::Encoder encoder(buffer);
    encoder.write_varint(2);
    encoder.write(std::string("first"));
    encoder.write(std::vector<int>{1, 2});
    encoder.write_bytes(bytes_of({0xaa, 0xbb}));
    mproc::encode_into(buffer, Color::blue);

    mproc::Decoder decoder(buffer);
    EXPECT_EQ(decoder.read_varint(), 2u);
    EXPECT_EQ(decoder.read<std::string>(), "first");
    std::vector<int> reused{9, 9, 9, 9};
    decoder.read_into(reused);
    EXPECT_EQ(reused, (std::vector<int>{1, 2}));
    const auto raw = decoder.read_bytes(2);
    EXPECT_EQ(Bytes(raw.begin(), raw.end()), bytes_of({0xaa, 0xbb}));
    EXPECT_EQ(decoder.remaining(), 1u);
    EXPECT_EQ(decoder.read<Color>(), Color::blue);
    EXPECT_TRUE(decoder.at_end());
    EXPECT_EQ(decoder.offset(), buffer.size());
    EXPECT_NO_THROW(decoder.expect_end());
    EXPECT_THROW((void)decoder.read_bytes(1), mproc::DecodeError);
}

TEST(CodecWireFormat, ReadIntoReplacesContents) {
    auto decode_into = [](const Bytes& bytes, auto& value) {
        mproc::Decoder decoder(bytes);
        decoder.read_into(value);
        decoder.expect_end();
    };
    std::map<int, int> m{{100, 100}};
    decode_into(mproc::dumps(std::map<int, int>{{1, 2}}), m);
    EXPECT_EQ(m, (std::map<int, int>{{1, 2}}));
    std::optional<std::string> o{"old"};
    decode_into(mproc::dumps(std::optional<std::string>{}), o);
    EXPECT_FALSE(o.has_value());
    std::list<int> l{5, 6};
    decode_into(mproc::dumps(std::list<int>{7}), l);
    EXPECT_EQ(l, std::list<int>{7});
    std::variant<int, std::string> v{std::string("old")};
    decode_into(mproc::dumps(std::variant<int, std::string>{3}), v);
    EXPECT_EQ(v, (std::variant<int, std::string>{3}));
}

static_assert(!std::is_constructible_v<mproc::Decoder, Bytes&&>,
              "a Decoder must not be built over a temporary buffer");
static_assert(std::is_constructible_v<mproc::Decoder, const Bytes&>);

// ---------------------------------------------------------------------------------------------
// Decode errors.

TEST(CodecErrors, Truncated) {
    expect_decode_error<std::int64_t>(bytes_of({1, 2, 3}),
                                      "truncated input: need 8 bytes at offset 0, 3 left");
    expect_decode_error<std::pair<std::int32_t, std::int64_t>>(
        concat({mproc::dumps(std::int32_t{1}), bytes_of({1, 2, 3})}),
        "need 8 bytes at offset 4, 3 left");
    expect_decode_error<std::string>(bytes_of({5, 'a', 'b'}),
                                     "element count 5 exceeds the 2 bytes left");
    expect_decode_error<int>({}, "truncated input: need 4 bytes at offset 0, 0 left");
    expect_decode_error<std::vector<int>>({}, "varint at offset 0 runs past the end");
}

TEST(CodecErrors, TrailingBytes) {
    expect_decode_error<std::int8_t>(bytes_of({1, 2}), "1 trailing byte after the value");
    expect_decode_error<std::string>(bytes_of({1, 'a', 0, 0, 0, 0, 0}),
                                     "5 trailing bytes after the value");
    const Bytes two = bytes_of({1, 2});
    mproc::Decoder decoder(two);
    (void)decoder.read<std::int8_t>();
    EXPECT_THROW(decoder.expect_end(), mproc::DecodeError);
}

TEST(CodecErrors, InvalidBool) {
    expect_decode_error<bool>(bytes_of({2}), "invalid bool byte 0x02 at offset 0");
    expect_decode_error<bool>(bytes_of({0x07}), "invalid bool byte 0x07");
    expect_decode_error<Flag>(bytes_of({0xff}), "invalid bool byte 0xff");
    expect_decode_error<std::vector<std::tuple<bool>>>(bytes_of({2, 1, 2}),
                                                       "invalid bool byte 0x02 at offset 2");
    expect_decode_error<std::array<bool, 2>>(bytes_of({0, 9}),
                                             "invalid bool byte 0x09 at offset 1");
}

TEST(CodecErrors, InvalidOptionalFlag) {
    expect_decode_error<std::optional<int>>(bytes_of({2, 0, 0, 0, 0}),
                                            "invalid optional flag byte 0x02 at offset 0");
}

TEST(CodecErrors, VariantIndexOutOfRange) {
    using V = std::variant<int, std::string, double>;
    expect_decode_error<V>(bytes_of({9, 0, 0, 0, 0}),
                           "variant index 9 out of range (3 alternatives)");
    expect_decode_error<V>(bytes_of({3}), "variant index 3 out of range");
    expect_decode_error<V>(varint_bytes(std::numeric_limits<std::uint64_t>::max()),
                           "variant index 18446744073709551615 out of range");
}

TEST(CodecErrors, HugeCountWithFourBytesOfPayload) {
    const Bytes hostile = concat({varint_bytes(std::uint64_t{1} << 32), bytes_of({1, 2, 3, 4})});
    expect_decode_error<std::vector<std::int32_t>>(
        hostile,
        "element count 4294967296 exceeds the 4 bytes left (each element takes at least 4 bytes");
    expect_decode_error<std::vector<std::uint8_t>>(
        hostile, "element count 4294967296 exceeds the 4 bytes left");
    expect_decode_error<std::string>(hostile, "element count 4294967296 exceeds the 4 bytes left");
    expect_decode_error<std::vector<std::string>>(hostile, "element count 4294967296 exceeds");
    expect_decode_error<std::deque<std::optional<int>>>(hostile,
                                                        "element count 4294967296 exceeds");
    expect_decode_error<std::map<std::int32_t, std::int32_t>>(
        hostile, "each element takes at least 8 bytes");
    expect_decode_error<std::unordered_set<std::string>>(hostile,
                                                         "element count 4294967296 exceeds");
    expect_decode_error<std::vector<bool>>(hostile, "truncated input: need 536870912 bytes");
    expect_decode_error<std::vector<Node>>(hostile, "truncated input");
}

TEST(CodecErrors, HugeStringLength) {
    expect_decode_error<std::string>(varint_bytes(std::uint64_t{1} << 62),
                                     "element count 4611686018427387904 exceeds the 0 bytes left");
    expect_decode_error<std::u32string>(concat({varint_bytes(0x7fffffff), bytes_of({1, 2, 3, 4})}),
                                        "element count 2147483647 exceeds the 4 bytes left");
}

TEST(CodecErrors, BadVarints) {
    expect_decode_error<std::string>(bytes_of({0x80, 0x00}), "overlong varint at offset 0");
    expect_decode_error<std::string>(bytes_of({0x81, 0x80, 0x00}), "overlong varint at offset 0");
    expect_decode_error<std::string>(
        bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
        "varint at offset 0 is longer than 64 bits");
    expect_decode_error<std::string>(
        bytes_of({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02}),
        "longer than 64 bits");
    expect_decode_error<std::string>(bytes_of({0x80}), "varint at offset 0 runs past the end");
    expect_decode_error<std::pair<std::int8_t, std::string>>(
        bytes_of({1, 0xff, 0xff}), "varint at offset 1 runs past the end");
}

TEST(CodecErrors, DuplicateKeys) {
    expect_decode_error<std::map<std::uint8_t, std::uint8_t>>(bytes_of({2, 1, 2, 1, 3}),
                                                              "duplicate key");
    expect_decode_error<std::set<std::uint8_t>>(bytes_of({2, 4, 4}), "duplicate key");
    expect_decode_error<std::unordered_map<std::uint8_t, std::uint8_t>>(bytes_of({2, 1, 2, 1, 3}),
                                                                        "duplicate key");
    expect_decode_error<std::unordered_set<std::uint8_t>>(bytes_of({2, 4, 4}), "duplicate key");
    // The multi containers take them.
    EXPECT_EQ(mproc::loads<std::multiset<std::uint8_t>>(bytes_of({2, 4, 4})).count(4), 2u);
}

TEST(CodecErrors, VectorBoolPaddingBits) {
    expect_decode_error<std::vector<bool>>(bytes_of({3, 0x0f}), "padding bits are not zero");
    EXPECT_EQ(mproc::loads<std::vector<bool>>(bytes_of({3, 0x07})), std::vector<bool>(3, true));
}

TEST(CodecErrors, DepthOfAMillionLevels) {
    // Each level of Bare is one count byte: one child, one child, ... then none.
    Bytes hostile(1'000'000, std::byte{1});
    hostile.push_back(std::byte{0});
    expect_decode_error<Bare>(hostile, "nesting deeper than 512 levels");
    // The same depth in a vector of trees, and through a field before the recursion.
    expect_decode_error<std::vector<Bare>>(concat({bytes_of({1}), hostile}),
                                           "nesting deeper than 512 levels");
    Bytes node_chain;
    for (int i = 0; i < 1'000'000; ++i)
        node_chain.insert(node_chain.end(),
                          {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}});
    expect_decode_error<Node>(node_chain, "nesting deeper than 512 levels");
}

TEST(CodecErrors, ElementsThatTakeNoBytesAreCapped) {
    const Bytes many = varint_bytes(std::uint64_t{1} << 40);
    expect_decode_error<std::vector<std::monostate>>(many,
                                                     "more than 65536 elements that take no bytes");
    expect_decode_error<std::list<std::tuple<>>>(many, "elements that take no bytes");
    expect_decode_error<std::vector<WritesNothing>>(many, "elements that take no bytes");
    expect_decode_error<std::set<std::monostate>>(bytes_of({2}), "duplicate key");
    // The cap is on the total within one value, not per container: 32 * 2^11 = 2^16 is the most.
    static_assert(mproc::kCodecMaxEmptyElements == 32 << 11);
    Bytes nested = varint_bytes(32);
    for (int i = 0; i < 32; ++i) {
        const Bytes inner = varint_bytes(std::uint64_t{1} << 11);
        nested.insert(nested.end(), inner.begin(), inner.end());
    }
    EXPECT_NO_THROW((void)mproc::loads<std::vector<std::vector<std::monostate>>>(
        std::span<const std::byte>(nested.data(), nested.size())));
    const Bytes one_more =
        concat({varint_bytes(33), Bytes(nested.begin() + 1, nested.end()), varint_bytes(1)});
    expect_decode_error<std::vector<std::vector<std::monostate>>>(one_more,
                                                                  "elements that take no bytes");
    // Encoding what the decoder would refuse fails early.
    EXPECT_THROW((void)mproc::dumps(std::vector<std::monostate>(mproc::kCodecMaxEmptyElements + 1)),
                 mproc::UsageError);
    EXPECT_NO_THROW((void)mproc::dumps(std::vector<std::monostate>(mproc::kCodecMaxEmptyElements)));
}

TEST(CodecErrors, ClassVersionPast32Bits) {
    expect_decode_error<Versioned>(concat({varint_bytes(std::uint64_t{1} << 32), mproc::dumps(1)}),
                                   "class version 4294967296 at offset 0 exceeds its maximum");
}

TEST(CodecErrors, ValuelessVariantIsAUsageError) {
    std::variant<int, ThrowsOnCopy> v;
    const ThrowsOnCopy source;
    EXPECT_THROW(v.emplace<1>(source), std::runtime_error);
    ASSERT_TRUE(v.valueless_by_exception());
    EXPECT_THROW((void)mproc::dumps(v), mproc::UsageError);
}

TEST(CodecErrors, EveryTruncationIsRejected) {
    expect_every_truncation_rejected(std::int64_t{-5});
    expect_every_truncation_rejected(std::string("truncate me"));
    expect_every_truncation_rejected(std::vector<std::int32_t>(300, 1));
    expect_every_truncation_rejected(std::vector<bool>(19, true));
    expect_every_truncation_rejected(std::map<std::string, std::vector<std::optional<int>>>{
        {"a", {1, std::nullopt}}, {"b", {}}});
    expect_every_truncation_rejected(std::variant<int, std::string>{std::string("v")});
    expect_every_truncation_rejected(std::tuple<bool, Point, std::u16string>{true, {1, 2}, u"t"});
    expect_every_truncation_rejected(Member{"m", {1, 2}, 3.0});
    expect_every_truncation_rejected(Node{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}});
    expect_every_truncation_rejected(Samples{{1, 2, 3}});
    Versioned versioned;
    versioned.value = 300;
    expect_every_truncation_rejected(versioned);
}

TEST(CodecErrors, ReservationsStayWithinTheInput) {
    // An element that is large in memory but can be one byte on the wire (an empty optional):
    // a count of 5000 followed by 5000 bytes, corrupt from the tenth, must not reserve 5000
    // elements of 4 KiB.
    using Big = std::optional<std::array<char, 4096>>;
    using Vec = std::vector<Big, LoggingAllocator<Big>>;
    allocation_log = {};
    Bytes hostile = concat({varint_bytes(5000), Bytes(5000, std::byte{0})});
    hostile[2 + 9] = std::byte{2};
    expect_decode_error<Vec>(hostile, "invalid optional flag byte 0x02 at offset 11");
    EXPECT_LE(allocation_log.largest, 16 * sizeof(Big));

    // Legitimate data of the same shape still decodes.
    allocation_log = {};
    const Vec legit(1000);
    EXPECT_EQ(mproc::loads<Vec>(mproc::dumps(legit)).size(), 1000u);
    EXPECT_LE(allocation_log.largest, 2048 * sizeof(Big));

    // Plain elements: exactly the count, which the input has been checked to hold.
    using Ints = std::vector<int, LoggingAllocator<int>>;
    allocation_log = {};
    EXPECT_EQ(mproc::loads<Ints>(mproc::dumps(Ints(5000, 3))).size(), 5000u);
    EXPECT_EQ(allocation_log.largest, 5000 * sizeof(int));
}

TEST(CodecErrors, UserExceptionsPassThrough) {
    EXPECT_THROW((void)mproc::loads<Legacy>(mproc::dumps(9)), mproc::DecodeError);
    try {
        (void)mproc::loads<Legacy>(mproc::dumps(9));
    } catch (const mproc::DecodeError& e) {
        EXPECT_STREQ(e.what(), "bad Legacy value");
    }
}

}  // namespace
