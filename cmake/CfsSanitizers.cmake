# SPDX-License-Identifier: Apache-2.0
# CFS_SANITIZE=address,undefined | thread applies to every target of the build tree.
if(CFS_SANITIZE)
  add_compile_options(-fsanitize=${CFS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${CFS_SANITIZE})
endif()
