# A short fuzz run for ctest: copy the seed corpus into a working corpus in
# the build dir (the seeds in git never change; the working corpus keeps
# what earlier runs found), fuzz for SECONDS, fail on any crash, leak,
# timeout or invariant violation, and say where the crashing input is.
# cmake -DFUZZER=... -DSEEDS=dir -DWORK=dir -DSECONDS=n [-DDICT=-dict=file] -P short_run.cmake
# Artifacts of an earlier run are gone: the failure message names only this run's.
file(REMOVE_RECURSE ${WORK}/artifacts)
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${FUZZER} ${WORK}/corpus -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/ ${DICT}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc}); input(s): ${found}\n"
          "Minimise: ${FUZZER} -minimize_crash=1 -runs=10000 <input>; then keep it in "
          "tests/fuzz/regressions/<target>/ (tests/fuzz/README.md)")
endif()
