// The dashboard's files (proxy/observe/dashboard/: HTML, CSS, JavaScript), compiled into the binary:
// embed_dashboard.cmake writes their bytes into a generated .cpp at build time.
#pragma once

#include <string_view>

namespace berth::proxy::observe {

struct DashboardAsset {
  std::string_view name;          ///< file name, e.g. "app.js"
  std::string_view content_type;  ///< from the extension
  std::string_view bytes;
  std::string_view etag;          ///< quoted: a hash of the bytes
};

/// The embedded file `name` ("index.html", "app.js"), or null. Thread: any.
const DashboardAsset* find_dashboard_asset(std::string_view name);

}  // namespace berth::proxy::observe
