#include "mproc/progress.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>

namespace mproc {

struct ProgressBar::State {
    std::string label;
    bool draw = false;
    std::mutex mutex;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_draw{};
    bool finished = false;
};

namespace {
std::string with_thousands(std::size_t n) {
    std::string digits = std::to_string(n);
    for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<std::size_t>(i), ",");
    return digits;
}
}  // namespace

ProgressBar::ProgressBar(std::string label, bool force) : state_(std::make_shared<State>()) {
    state_->label = std::move(label);
    state_->draw = force || ::isatty(STDERR_FILENO) == 1;
}

bool ProgressBar::drawing() const noexcept { return state_->draw; }

void ProgressBar::operator()(std::size_t done, std::size_t total) const {
    if (!state_->draw) return;
    std::lock_guard lock(state_->mutex);
    if (state_->finished) return;
    const auto now = std::chrono::steady_clock::now();
    const bool complete = total > 0 && done >= total;
    if (!complete && now - state_->last_draw < std::chrono::milliseconds(100)) return;
    state_->last_draw = now;
    constexpr int width = 30;
    const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
    const int filled = static_cast<int>(fraction * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '.');
    const double seconds = std::chrono::duration<double>(now - state_->started).count();
    std::fprintf(stderr, "\r%s%s[%s] %3d%%  %s/%s  %.1f s%s", state_->label.c_str(), state_->label.empty() ? "" : " ",
                 bar.c_str(), static_cast<int>(fraction * 100), with_thousands(done).c_str(),
                 with_thousands(total).c_str(), seconds, complete ? "\n" : "");
    std::fflush(stderr);
    if (complete) state_->finished = true;
}

}  // namespace mproc
