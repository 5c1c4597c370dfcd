#pragma once
// mproc: Python's multiprocessing for C++20. One include for the whole library.
#include "mproc/authkey.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/logging.hpp"
#include "mproc/managers.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"
