#include <mproc/mproc.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Process p([] {
        std::printf("child says hello\n");
        mproc::exit(3);
    });
    p.start();
    p.join();
    std::printf("exitcode %d\n", *p.exitcode());
}
