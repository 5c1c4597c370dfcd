#pragma once
// A progress bar for long map/imap calls, drawn on stderr when stderr is a terminal:
//
//   mproc::ProgressBar bar("counting words");
//   auto counts = pool.map(count_words, files, {.on_progress = bar});
//
//   counting words [################............] 57%  4,210/7,385  3.2 s
//
// It is a ProgressCallback (copies share one bar). Redraws are limited to ten a second; the last
// one, at 100%, ends the line. When stderr is not a terminal it draws nothing, so logs and test
// output stay clean; `force` draws anyway.
#include <cstddef>
#include <memory>
#include <string>

namespace mproc {

class ProgressBar {
public:
    explicit ProgressBar(std::string label = {}, bool force = false);
    void operator()(std::size_t done, std::size_t total) const;
    // Whether this bar draws at all (stderr is a terminal, or force).
    bool drawing() const noexcept;

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace mproc
