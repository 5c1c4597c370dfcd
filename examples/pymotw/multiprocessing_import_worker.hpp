// The target of multiprocessing_import_main, defined in a module of its own.
#pragma once

namespace multiprocessing_import_worker {

void worker();

}  // namespace multiprocessing_import_worker
