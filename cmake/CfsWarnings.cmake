# SPDX-License-Identifier: Apache-2.0
# Warnings for first-party targets only (linked PRIVATE), so third-party headers never break -Werror.
add_library(cfs_warnings INTERFACE)
target_compile_options(cfs_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough
  -Wformat=2 -Wmissing-declarations)
if(CFS_WERROR)
  target_compile_options(cfs_warnings INTERFACE -Werror)
endif()
target_compile_definitions(cfs_warnings INTERFACE $<$<CONFIG:Debug>:_GLIBCXX_ASSERTIONS>)
