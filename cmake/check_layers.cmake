# Fails when a file of one layer includes a header of a layer it does not build on
# (src/CMakeLists.txt declares the layers and what each may use). Run by the build,
# before the layer's library compiles, with -DCONFIG=<file> naming:
#   LAYER      the layer checked
#   ALLOWED    the layers it may include: itself and every layer below it
#   FILES      its sources and private headers (absolute paths)
#   OWNERS     pairs "prefix=layer": an include path starting with prefix (the longest
#              that matches) belongs to that layer; paths that match none (system and
#              third-party headers) are not checked
#   STAMP      the file written when the check passes
cmake_minimum_required(VERSION 3.25)
include(${CONFIG})
set(bad "")
foreach(file IN LISTS FILES)
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" path "${line}")
    set(owner "")
    set(best 0)
    foreach(pair IN LISTS OWNERS)
      string(REPLACE "=" ";" kv "${pair}")
      list(GET kv 0 prefix)
      list(GET kv 1 layer)
      string(LENGTH "${prefix}" len)
      string(SUBSTRING "${path}" 0 ${len} head)
      if(head STREQUAL prefix AND len GREATER best)
        set(owner ${layer})
        set(best ${len})
      endif()
    endforeach()
    if(owner AND NOT owner IN_LIST ALLOWED)
      file(RELATIVE_PATH rel ${ROOT} ${file})
      string(APPEND bad "\n  ${rel}: #include \"${path}\" is layer '${owner}'")
    endif()
  endforeach()
endforeach()
if(bad)
  string(REPLACE ";" ", " allowed "${ALLOWED}")
  message(FATAL_ERROR "layer '${LAYER}' includes a layer it does not build on:${bad}\n"
                      "'${LAYER}' may include only: ${allowed} (src/CMakeLists.txt orders the "
                      "layers; docs/architecture.md says why)")
endif()
file(WRITE ${STAMP} "ok\n")
