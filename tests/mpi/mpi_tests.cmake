# The MPI pool's tests: whole programs run under mpirun by run_mpi.py, which fails a job that does
# not end in time or ends otherwise than expected. mpirun's run-as-root and oversubscribe settings
# live in these tests' environment only.
find_package(Python3 REQUIRED COMPONENTS Interpreter)

add_executable(mpi_pool_test mpi/mpi_pool_test.cpp)
target_link_libraries(mpi_pool_test PRIVATE mproc::mpi GTest::gtest)
target_compile_options(mpi_pool_test PRIVATE -Wall -Wextra)

add_executable(mpi_rank_loss mpi/mpi_rank_loss.cpp)
target_link_libraries(mpi_rank_loss PRIVATE mproc::mpi)

add_executable(mpi_protocol_error mpi/mpi_protocol_error.cpp)
target_link_libraries(mpi_protocol_error PRIVATE mproc::mpi MPI::MPI_C)
target_include_directories(mpi_protocol_error PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_definitions(mpi_protocol_error PRIVATE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)

foreach(variant 1 2)
  add_executable(mpi_identity_${variant} mpi/mpi_identity.cpp)
  target_link_libraries(mpi_identity_${variant} PRIVATE mproc::mpi)
  target_compile_definitions(mpi_identity_${variant} PRIVATE MPROC_TEST_VARIANT=${variant})
endforeach()

set(mpirun ${MPIEXEC_EXECUTABLE})
set(run_mpi ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/run_mpi.py)
set(mpi_environment OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1)
if(MPROC_SANITIZE)
  # Open MPI's plug-ins, unloaded by MPI_Finalize, leave allocations that LeakSanitizer reports
  # even for a correct two-line MPI program, and, unloaded, they cannot be named in a suppression:
  # the MPI tests run with the address and undefined-behaviour checks but without leak detection.
  list(APPEND mpi_environment "ASAN_OPTIONS=detect_leaks=0:abort_on_error=0")
endif()

function(mproc_add_mpi_test name label)
  add_test(NAME ${name} COMMAND ${ARGN})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${mpi_environment}" LABELS "${label};mpi" TIMEOUT 300)
endfunction()

mproc_add_mpi_test(mpi.pool.shared_memory conformance
  ${run_mpi} --within 240 -- ${mpirun} -np 3 $<TARGET_FILE:mpi_pool_test>)
# The network path of a real cluster: no shared-memory transport at all.
mproc_add_mpi_test(mpi.pool.tcp conformance
  ${run_mpi} --within 240 -- ${mpirun} --mca btl tcp,self -np 3 $<TARGET_FILE:mpi_pool_test>)
mproc_add_mpi_test(mpi.pool.without_mpirun conformance
  ${run_mpi} --within 240 --expect "mproc::mpi: one rank only" -- $<TARGET_FILE:mpi_pool_test>)
mproc_add_mpi_test(mpi.rank_loss.recovery faults
  ${run_mpi} --within 120 --expect "ranks 2 -> 1, tasks ok \\d+, lost \\d+, other 0, after: 2401"
             --expect "first loss: MPI rank [12] on .* was lost: nothing heard from it"
             -- ${mpirun} --enable-recovery -np 3 $<TARGET_FILE:mpi_rank_loss>)
mproc_add_mpi_test(mpi.rank_loss.default faults
  ${run_mpi} --within 120 --rc-nonzero --expect "rank [12] .* exited on signal 9"
             -- ${mpirun} -np 3 $<TARGET_FILE:mpi_rank_loss>)
mproc_add_mpi_test(mpi.protocol_error faults
  ${run_mpi} --within 120 --expect "ranks 2 -> 1, maps ok"
             --expect "MPI rank 1 on .* was lost: it could not read a message from rank 0: .*kind 238"
             -- ${mpirun} --enable-recovery -np 3 $<TARGET_FILE:mpi_protocol_error>)
mproc_add_mpi_test(mpi.build_id.mismatch faults
  ${run_mpi} --within 120 --rc-nonzero
             --expect "MismatchError: mproc::mpi::init: the ranks do not run the same program"
             --expect "rank 1 on [^:]+: rank 0 has the program [0-9a-f]+, it has the program [0-9a-f]+"
             -- ${mpirun} -np 1 $<TARGET_FILE:mpi_identity_1> : -np 1 $<TARGET_FILE:mpi_identity_2>)
mproc_add_mpi_test(mpi.build_id.same conformance
  ${run_mpi} --within 120 --expect "variant 1 ran a task: 101"
             -- ${mpirun} -np 2 $<TARGET_FILE:mpi_identity_1>)
