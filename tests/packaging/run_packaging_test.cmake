file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# Configures, builds and runs a consumer project (its executable is named `program`), whose
# output must be `expected`.
function(consume source program expected)
  run(${CMAKE_COMMAND} -S ${source} -B ${WORK_DIR}/${program} -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/${program})
  run(${WORK_DIR}/${program}/${program})
  if(NOT last_output STREQUAL expected)
    message(FATAL_ERROR "unexpected output from ${program}:\n${last_output}")
  endif()
  message(STATUS "${program} built and ran")
endfunction()

run(${CMAKE_COMMAND} --install ${MPROC_BUILD_DIR} --prefix ${prefix})
consume(${CONSUMER_SOURCE} mproc_consumer "child says hello\nexitcode 3\n")

# The MPI component, when this build has it: find_package(mproc COMPONENTS mpi) and mproc::mpi,
# run here with one rank (no mpirun), where the pool's tasks run in a local pool.
if(WITH_MPI)
  consume(${MPI_CONSUMER_SOURCE} mproc_mpi_consumer "ranks 1, last square 81\n")
endif()
