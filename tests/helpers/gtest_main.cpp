// The main of every test binary: mproc::init first, so that the binaries can start children under
// every start method (spawn and the fork server execute the test binary anew).
#include <gtest/gtest.h>

#include "mproc/process.hpp"

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
