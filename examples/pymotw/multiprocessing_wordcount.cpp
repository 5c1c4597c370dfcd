// Shows: counting the words of text files with SimpleMapReduce; the map function reports which
// pool worker reads which file.
//
//   multiprocessing_wordcount [FILE...]     default: every *.rst file of the current directory
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mproc/process.hpp>

#include "multiprocessing_mapreduce.hpp"

using WordCount = std::pair<std::string, int>;

constexpr std::string_view STOP_WORDS[] = {"a",  "an", "and", "are", "as", "be",  "by",   "for", "if", "in",
                                           "is", "it", "of",  "or",  "py", "rst", "that", "the", "to", "with"};

bool is_word(const std::string& token) {
    return !token.empty() && std::ranges::all_of(token, [](unsigned char c) { return std::isalpha(c) != 0; }) &&
           std::ranges::find(STOP_WORDS, token) == std::end(STOP_WORDS);
}

// Read a file and return a sequence of (word, occurrences) values.
std::vector<WordCount> file_to_words(const std::string& filename) {
    std::printf("%s reading %s\n", mproc::current_process().name().c_str(), filename.c_str());
    // A spawned worker never ran main's setvbuf: flush, so the line shows now, as under `python -u`.
    std::fflush(stdout);
    std::vector<WordCount> output;
    std::ifstream f(filename);
    std::string line;
    while (std::getline(f, line)) {
        // Skip comment and directive lines (`.. literalinclude::`).
        const auto first = line.find_first_not_of(" \t\n\v\f\r");
        if (first != std::string::npos && line.compare(first, 2, "..") == 0) continue;
        for (char& c : line)
            if (std::ispunct(static_cast<unsigned char>(c))) c = ' ';
        std::istringstream tokens(line);
        std::string word;
        while (tokens >> word) {
            for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (is_word(word)) output.emplace_back(word, 1);
        }
    }
    return output;
}

// Convert the partitioned data for a word to a tuple containing the word and the number of
// occurrences.
WordCount count_words(const std::pair<std::string, std::vector<int>>& item) {
    const auto& [word, occurrences] = item;
    int total = 0;
    for (int n : occurrences) total += n;
    return {word, total};
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    // The chapter ran this example with `python -u`.
    std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);

    std::vector<std::string> input_files(argv + 1, argv + argc);
    if (input_files.empty()) {
        // glob('*.rst'), in name order rather than the directory's.
        for (const auto& entry : std::filesystem::directory_iterator(".")) {
            const std::string name = entry.path().filename().string();
            if (entry.is_regular_file() && name.front() != '.' && entry.path().extension() == ".rst")
                input_files.push_back(name);
        }
        std::ranges::sort(input_files);
    }

    SimpleMapReduce mapper(file_to_words, count_words);
    std::vector<WordCount> word_counts = mapper(input_files);
    // Descending counts; among equal counts, the word that appeared last comes first (Python's
    // sort by count, then reverse()).
    std::ranges::stable_sort(word_counts, {}, &WordCount::second);
    std::ranges::reverse(word_counts);

    std::printf("\nTOP 20 WORDS BY FREQUENCY\n\n");
    const std::size_t shown = std::min<std::size_t>(20, word_counts.size());
    int longest = 0;
    for (std::size_t i = 0; i < shown; ++i) longest = std::max(longest, static_cast<int>(word_counts[i].first.size()));
    for (std::size_t i = 0; i < shown; ++i)
        std::printf("%-*s: %5d\n", longest + 1, word_counts[i].first.c_str(), word_counts[i].second);
}
