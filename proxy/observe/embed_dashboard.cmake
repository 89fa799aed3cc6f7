# Writes OUT, a C++ source holding every file of DIR as bytes with its Content-Type and an ETag (the
# start of its SHA-256), for observe/dashboard_assets.h. Run as: cmake -DDIR=... -DOUT=... -P this.
file(GLOB names RELATIVE ${DIR} ${DIR}/*)
list(SORT names)
set(arrays "")
set(table "")
set(i 0)
foreach(name ${names})
  if(IS_DIRECTORY ${DIR}/${name})
    continue()
  endif()
  file(READ ${DIR}/${name} hex HEX)
  file(SHA256 ${DIR}/${name} sha)
  string(SUBSTRING ${sha} 0 20 etag)
  string(LENGTH "${hex}" digits)
  math(EXPR size "${digits} / 2")
  if(size EQUAL 0)
    set(bytes "0")
  else()
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
    # Lines of 32 bytes keep the generated file readable by tools.
    string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
  endif()
  get_filename_component(ext ${name} LAST_EXT)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  elseif(ext STREQUAL ".js")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(type "image/svg+xml")
  elseif(ext STREQUAL ".png")
    set(type "image/png")
  elseif(ext STREQUAL ".ico")
    set(type "image/x-icon")
  else()
    set(type "application/octet-stream")
  endif()
  string(APPEND arrays "const unsigned char kFile${i}[] = {\n${bytes}};\n")
  string(APPEND table "    {\"${name}\", \"${type}\", {reinterpret_cast<const char*>(kFile${i}), ${size}}, \"\\\"${etag}\\\"\"},\n")
  math(EXPR i "${i} + 1")
endforeach()
set(text "// Generated from proxy/observe/dashboard/ by proxy/observe/embed_dashboard.cmake: do not edit.
#include \"proxy/observe/dashboard_assets.h\"

namespace berth::proxy::observe {
namespace {
${arrays}
const DashboardAsset kAssets[] = {
${table}};
}  // namespace

const DashboardAsset* find_dashboard_asset(std::string_view name) {
  for (const auto& a : kAssets)
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace berth::proxy::observe
")
file(WRITE ${OUT} "${text}")
