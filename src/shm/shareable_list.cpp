// ShareableList: Python's layout of a list in a named segment (shareable_list.hpp).
#include "mproc/shareable_list.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "mproc/detail/py_repr.hpp"
#include "mproc/errors.hpp"

namespace mproc {
namespace {

constexpr std::size_t kAlignment = 8;   // every slot is a multiple of 8 bytes
constexpr std::size_t kFormatSize = 8;  // each item's struct format, NUL-padded
// The longest str or bytes item whose format ("<size>s") still fits in 8 characters.
constexpr std::size_t kMaxItemBytes = 9'999'999 - kAlignment;

constexpr const char* kFormatInt = "q";
constexpr const char* kFormatFloat = "d";
constexpr const char* kFormatBool = "xxxxxxx?";
constexpr const char* kFormatNone = "xxxxxx?x";

// Python's _back_transforms_mapping codes.
enum BackTransform : std::int8_t { kAsIs = 0, kStr = 1, kBytes = 2, kNone = 3 };

// The bytes a str or bytes item stores; nullptr for the other types.
const std::string* text_of(const ShareableValue& value) {
    if (const auto* s = std::get_if<std::string>(&value)) return s;
    if (const auto* b = std::get_if<Bytes>(&value)) return &b->data();
    return nullptr;
}

std::int8_t back_transform_of(const ShareableValue& value) {
    if (std::holds_alternative<std::string>(value)) return kStr;
    if (std::holds_alternative<Bytes>(value)) return kBytes;
    if (std::holds_alternative<None>(value)) return kNone;
    return kAsIs;
}

// The format of a value that is not a str or bytes.
const char* fixed_format_of(const ShareableValue& value) {
    if (std::holds_alternative<std::int64_t>(value)) return kFormatInt;
    if (std::holds_alternative<double>(value)) return kFormatFloat;
    if (std::holds_alternative<bool>(value)) return kFormatBool;
    return kFormatNone;
}

// The slot of a str or bytes item. Python sizes a str by its characters (code points), not by
// the bytes of its UTF-8 encoding, and truncates an encoding longer than that; the same size is
// kept wherever the encoding fits it, and one from the bytes where it does not.
std::size_t slot_of_text(const ShareableValue& value, const std::string& text) {
    if (text.size() > kMaxItemBytes)
        throw ValueError(fmt::format("a str or bytes item of {} bytes does not fit a ShareableList (at most {} bytes)",
                                     text.size(), kMaxItemBytes));
    std::size_t length = text.size();
    if (std::holds_alternative<std::string>(value))
        length = static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
            return (static_cast<unsigned char>(c) & 0xc0) != 0x80;  // not a continuation byte
        }));
    const std::size_t slot = kAlignment * (length / kAlignment + 1);
    return slot >= text.size() ? slot : kAlignment * (text.size() / kAlignment + 1);
}

std::int64_t read_i64(const std::byte* at) {
    std::int64_t v;
    std::memcpy(&v, at, sizeof v);
    return v;
}

void write_i64(std::byte* at, std::int64_t v) { std::memcpy(at, &v, sizeof v); }

void write_format(std::byte* at, std::string_view format) {
    std::memset(at, 0, kFormatSize);
    std::memcpy(at, format.data(), format.size());
}

// The width of a str or bytes format ("16s"); 0 for any other format.
std::size_t width_of(std::string_view format) {
    if (format.size() < 2 || format.size() > kFormatSize || format.back() != 's') return 0;
    std::size_t width = 0;
    for (char c : format.substr(0, format.size() - 1)) {
        if (c < '0' || c > '9') return 0;
        width = width * 10 + static_cast<std::size_t>(c - '0');
    }
    return width;
}

// Packs `value` with `format` into its slot at `at` (Python's struct.pack_into).
void pack(std::byte* at, std::string_view format, const ShareableValue& value) {
    if (const std::string* text = text_of(value)) {
        const std::size_t width = width_of(format);
        std::memcpy(at, text->data(), text->size());
        std::memset(at + text->size(), 0, width - text->size());
    } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
        write_i64(at, *i);
    } else if (const auto* d = std::get_if<double>(&value)) {
        std::memcpy(at, d, sizeof *d);
    } else {
        std::memset(at, 0, kAlignment);
        if (const auto* b = std::get_if<bool>(&value)) at[7] = std::byte{*b ? std::uint8_t{1} : std::uint8_t{0}};
    }
}

std::string without_nuls_at_end(const std::byte* at, std::size_t size) {
    std::string out(reinterpret_cast<const char*>(at), size);
    out.erase(out.find_last_not_of('\0') + 1);
    return out;
}

// Python's float == int, exactly (no rounding of the int).
bool float_equals_int(double d, std::int64_t i) {
    if (!std::isfinite(d) || d != std::trunc(d)) return false;
    // 2^63 is the first double past int64's range.
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
    return static_cast<std::int64_t>(d) == i;
}

}  // namespace

std::string Bytes::repr() const {
    // Python's repr of a str, whose bytes from 0x80 up are escaped as well in a bytes.
    std::string out = "b";
    for (char c : detail::py_repr_string(data_)) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x80) out += fmt::format("\\x{:02x}", u);
        else out += c;
    }
    return out;
}

bool python_equal(const ShareableValue& a, const ShareableValue& b) {
    // int, float and bool are numbers; a bool is 0 or 1.
    auto as_int = [](const ShareableValue& v, std::int64_t& out) {
        if (const auto* i = std::get_if<std::int64_t>(&v)) out = *i;
        else if (const auto* flag = std::get_if<bool>(&v)) out = *flag ? 1 : 0;
        else return false;
        return true;
    };
    std::int64_t ia = 0;
    std::int64_t ib = 0;
    const bool a_int = as_int(a, ia);
    const bool b_int = as_int(b, ib);
    const auto* da = std::get_if<double>(&a);
    const auto* db = std::get_if<double>(&b);
    if (a_int && b_int) return ia == ib;
    if (da && db) return *da == *db;
    if (da && b_int) return float_equals_int(*da, ib);
    if (a_int && db) return float_equals_int(*db, ia);
    if (a_int || b_int || da || db) return false;
    return a == b;  // str, bytes, None: same type and contents
}

std::string repr(const ShareableValue& value) {
    return std::visit(
        [](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, None>) return "None";
            else if constexpr (std::is_same_v<T, Bytes>) return v.repr();
            else return detail::py_repr(v);
        },
        value);
}

// ---- ShareableList ----

ShareableList::ShareableList(std::initializer_list<ShareableValue> sequence, ShareableListOptions options) {
    create(std::span(sequence.begin(), sequence.size()), std::move(options));
}

ShareableList::ShareableList(const std::vector<ShareableValue>& sequence, ShareableListOptions options) {
    create(sequence, std::move(options));
}

void ShareableList::create(std::span<const ShareableValue> sequence, ShareableListOptions options) {
    const std::size_t n = sequence.size();
    std::vector<std::string> formats;
    formats.reserve(n);
    offsets_.assign(1, 0);
    for (const auto& value : sequence) {
        std::size_t slot = kAlignment;
        if (const std::string* text = text_of(value)) {
            slot = slot_of_text(value, *text);
            formats.push_back(std::to_string(slot) + "s");
        } else {
            formats.emplace_back(fixed_format_of(value));
        }
        offsets_.push_back(offsets_.back() + static_cast<std::int64_t>(slot));
    }
    const std::size_t data_start = (n + 2) * 8;
    const std::size_t formats_at = data_start + static_cast<std::size_t>(offsets_.back());
    const std::size_t size = formats_at + n * kFormatSize + n;
    shm_ = SharedMemory({.name = std::move(options.name),
                         .create = true,
                         .size = static_cast<std::int64_t>(size),
                         .track = options.track});
    std::byte* at = shm_.buf().data();
    write_i64(at, static_cast<std::int64_t>(n));
    for (std::size_t i = 0; i <= n; ++i) write_i64(at + 8 * (i + 1), offsets_[i]);
    for (std::size_t i = 0; i < n; ++i) {
        pack(at + data_start + offsets_[i], formats[i], sequence[i]);
        write_format(at + formats_at + i * kFormatSize, formats[i]);
        at[formats_at + n * kFormatSize + i] = static_cast<std::byte>(back_transform_of(sequence[i]));
    }
}

namespace {
SharedMemory attach_named(ShareableListOptions options) {
    if (options.name.empty()) throw UsageError("a ShareableList to attach to needs a name");
    return SharedMemory({.name = std::move(options.name), .create = false, .size = 0, .track = options.track});
}
}  // namespace

ShareableList::ShareableList(ShareableListOptions options) : ShareableList(attach_named(std::move(options))) {}

ShareableList::ShareableList(SharedMemory attached) : shm_(std::move(attached)) {
    const std::size_t size = shm_.size();
    const std::byte* at = shm_.buf().data();
    auto corrupt = [&](const std::string& why) {
        return DecodeError(fmt::format("shared memory '{}' does not hold a ShareableList: {}", shm_.name(), why));
    };
    if (size < 16) throw corrupt(fmt::format("{} bytes are too few", size));
    const std::int64_t n = read_i64(at);
    // Each item takes at least 8 + 8 + 8 + 1 bytes: its offset, its slot, its format and its code.
    if (n < 0 || static_cast<std::uint64_t>(n) > (size - 16) / 25)
        throw corrupt(fmt::format("a length of {} does not fit in {} bytes", n, size));
    const auto count = static_cast<std::size_t>(n);
    std::vector<std::int64_t> offsets(count + 1);
    for (std::size_t i = 0; i <= count; ++i) {
        offsets[i] = read_i64(at + 8 * (i + 1));
        if (offsets[i] < (i == 0 ? 0 : offsets[i - 1]))
            throw corrupt(fmt::format("the offset of item {} is {}", i, offsets[i]));
    }
    const std::size_t data_start = (count + 2) * 8;
    if (static_cast<std::uint64_t>(offsets[count]) > size - data_start - 9 * count)
        throw corrupt(fmt::format("{} bytes of items do not fit", offsets[count]));
    offsets_ = std::move(offsets);
}

std::byte* ShareableList::base() const { return shm_.buf().data(); }

std::size_t ShareableList::position(std::int64_t index, const char* message) const {
    const auto n = static_cast<std::int64_t>(size());
    const std::int64_t at = index < 0 ? index + n : index;
    if (at < 0 || at >= n) throw IndexError(message);
    return static_cast<std::size_t>(at);
}

std::string ShareableList::format_of(std::size_t i) const {
    const std::size_t n = size();
    const std::byte* at = base() + (n + 2) * 8 + static_cast<std::size_t>(offsets_[n]) + i * kFormatSize;
    return without_nuls_at_end(at, kFormatSize);
}

ShareableValue ShareableList::get(std::int64_t index) const {
    const std::size_t i = position(index, "index out of range");
    const std::size_t n = size();
    const std::byte* data = base();
    const std::string format = format_of(i);
    const auto code = static_cast<std::int8_t>(data[(n + 2) * 8 + static_cast<std::size_t>(offsets_[n]) + n * kFormatSize + i]);
    const std::byte* slot = data + (n + 2) * 8 + offsets_[i];
    const auto slot_size = static_cast<std::size_t>(offsets_[i + 1] - offsets_[i]);
    auto corrupt = [&] {
        return DecodeError(fmt::format("ShareableList '{}': item {} has format '{}' and code {}, which do not fit its "
                                       "slot of {} bytes",
                                       name(), i, format, code, slot_size));
    };
    if (code == kNone) return None{};
    if (code == kStr || code == kBytes) {
        const std::size_t width = width_of(format);
        if (width == 0 || width > slot_size) throw corrupt();
        std::string text = without_nuls_at_end(slot, width);
        if (code == kStr) return text;
        return Bytes(text);
    }
    if (code != kAsIs || slot_size < kAlignment) throw corrupt();
    if (format == kFormatInt) return read_i64(slot);
    if (format == kFormatFloat) {
        double d;
        std::memcpy(&d, slot, sizeof d);
        return d;
    }
    if (format == kFormatBool) return slot[7] != std::byte{0};
    throw corrupt();
}

void ShareableList::set(std::int64_t index, const ShareableValue& value) const {
    const std::size_t i = position(index, "assignment index out of range");
    const std::size_t n = size();
    std::byte* data = base();
    std::string format;
    if (const std::string* text = text_of(value)) {
        const auto slot_size = static_cast<std::size_t>(offsets_[i + 1] - offsets_[i]);
        if (text->size() > slot_size) throw ValueError("bytes/str item exceeds available storage");
        // Python keeps a str or bytes item's format (its width) and gives a slot that held a
        // number the whole slot.
        format = format_of(i);
        const std::size_t width = width_of(format);
        if (width < text->size() || width > slot_size) format = std::to_string(slot_size) + "s";
    } else {
        format = fixed_format_of(value);
    }
    const std::size_t formats_at = (n + 2) * 8 + static_cast<std::size_t>(offsets_[n]);
    write_format(data + formats_at + i * kFormatSize, format);
    data[formats_at + n * kFormatSize + i] = static_cast<std::byte>(back_transform_of(value));
    pack(data + (n + 2) * 8 + offsets_[i], format, value);
}

std::size_t ShareableList::count(const ShareableValue& value) const {
    std::size_t found = 0;
    for (std::size_t i = 0; i < size(); ++i) found += python_equal(value, get(static_cast<std::int64_t>(i))) ? 1 : 0;
    return found;
}

std::size_t ShareableList::index(const ShareableValue& value) const {
    for (std::size_t i = 0; i < size(); ++i)
        if (python_equal(value, get(static_cast<std::int64_t>(i)))) return i;
    throw ValueError(mproc::repr(value) + " not in this container");
}

std::string ShareableList::format() const {
    std::string out;
    for (std::size_t i = 0; i < size(); ++i) out += format_of(i);
    return out;
}

std::vector<ShareableValue> ShareableList::tolist() const { return std::vector<ShareableValue>(begin(), end()); }

std::string ShareableList::repr() const {
    std::string out = "ShareableList([";
    for (std::size_t i = 0; i < size(); ++i) {
        if (i > 0) out += ", ";
        out += mproc::repr(get(static_cast<std::int64_t>(i)));
    }
    return out + "], name=" + detail::py_repr_string(name()) + ")";
}

}  // namespace mproc
