# SPDX-License-Identifier: Apache-2.0
# CFS_SANITIZE=address,undefined | thread applies to every target of the build tree.
if(CFS_SANITIZE)
  add_compile_options(-fsanitize=${CFS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${CFS_SANITIZE})
endif()

# CFS_FUZZ (clang only): coverage instrumentation for every first-party target so libFuzzer
# targets (tests/fuzz) get feedback from the libraries they call.
if(CFS_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CFS_FUZZ=ON needs clang (CXX=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
  add_link_options(-fsanitize=fuzzer-no-link)
endif()
