// Provides worker(), the target used by multiprocessing_import_main.
#include "multiprocessing_import_worker.hpp"

#include <cstdio>

namespace multiprocessing_import_worker {

void worker() {
    std::printf("Worker\n");
}

}  // namespace multiprocessing_import_worker
