// CORS preflight answers and response headers of the `headers` middleware; see cors.h.
#include "proxy/middleware/cors.h"

#include <re2/re2.h>

#include <algorithm>

namespace berth::proxy::middleware {
namespace {

using namespace std::string_view_literals;

// strings.Join(list, ","): Traefik joins without a space, and keeps empty entries.
std::string join(const std::vector<std::string>& list) {
  std::string out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (i) out += ',';
    out += list[i];
  }
  return out;
}

bool has_wildcard(const std::vector<std::string>& list) {
  return std::find(list.begin(), list.end(), "*") != list.end();
}

}  // namespace

Cors::Cors(Cors&&) noexcept = default;
Cors& Cors::operator=(Cors&&) noexcept = default;
Cors::~Cors() = default;

Result<Cors> Cors::compile(const CorsConfig& c) {
  Cors cors;
  // Go's regexp and RE2 share a syntax; both take UTF-8 and search unanchored (MatchString).
  RE2::Options options;
  options.set_log_errors(false);
  for (const auto& pattern : c.allow_origin_list_regex) {
    auto re = std::make_unique<RE2>(pattern, options);
    if (!re->ok())
      return Error{"", "accessControlAllowOriginListRegex \"" + pattern + "\": " + re->error()};
    cors.origin_regexes_.push_back(std::move(re));
  }
  cors.enabled_ = c.allow_credentials || !c.allow_headers.empty() || !c.allow_methods.empty() ||
                  !c.allow_origin_list.empty() || !c.allow_origin_list_regex.empty() ||
                  !c.expose_headers.empty() || c.max_age.has_value() || c.add_vary_header;
  cors.allow_credentials_ = c.allow_credentials;
  cors.add_vary_ = c.add_vary_header;
  // With credentials a browser reads "*" literally, so Traefik echoes what the request asked for.
  cors.echo_request_headers_ = c.allow_credentials && has_wildcard(c.allow_headers);
  cors.echo_request_method_ = c.allow_credentials && has_wildcard(c.allow_methods);
  cors.has_expose_ = !c.expose_headers.empty() && !(c.allow_credentials && has_wildcard(c.expose_headers));
  cors.has_max_age_ = c.max_age.has_value();
  cors.allow_headers_ = join(c.allow_headers);
  cors.allow_methods_ = join(c.allow_methods);
  cors.expose_headers_ = join(c.expose_headers);
  if (c.max_age) cors.max_age_ = std::to_string(*c.max_age);
  cors.origins_ = c.allow_origin_list;
  return cors;
}

bool Cors::is_preflight(std::string_view method, std::string_view origin, std::string_view request_method) const {
  return enabled_ && method == "OPTIONS"sv && !origin.empty() && !request_method.empty();
}

std::optional<std::string_view> Cors::allowed_origin(std::string_view origin) const {
  for (const auto& item : origins_) {
    if (item == origin) return std::string_view(item);
    if (item == "*"sv) return allow_credentials_ ? origin : "*"sv;
  }
  for (const auto& re : origin_regexes_)
    if (RE2::PartialMatch(origin, *re)) return origin;
  return std::nullopt;
}

void Cors::preflight_headers(std::string_view origin, std::string_view request_method,
                             std::string_view request_headers, HeaderEdits& out) const {
  if (allow_credentials_) out.emplace_back("Access-Control-Allow-Credentials"sv, "true"sv);
  if (echo_request_headers_) {
    if (!request_headers.empty()) out.emplace_back("Access-Control-Allow-Headers"sv, request_headers);
  } else if (!allow_headers_.empty()) {
    out.emplace_back("Access-Control-Allow-Headers"sv, allow_headers_);
  }
  // A preflight always carries a method, so the echo is never empty.
  if (echo_request_method_) out.emplace_back("Access-Control-Allow-Methods"sv, request_method);
  else if (!allow_methods_.empty()) out.emplace_back("Access-Control-Allow-Methods"sv, allow_methods_);
  if (auto allowed = allowed_origin(origin)) out.emplace_back("Access-Control-Allow-Origin"sv, *allowed);
  if (has_max_age_) out.emplace_back("Access-Control-Max-Age"sv, max_age_);
  if (has_expose_) out.emplace_back("Access-Control-Expose-Headers"sv, expose_headers_);
}

void Cors::response_headers(std::string_view origin, HeaderEdits& out) const {
  if (!enabled_) return;
  if (auto allowed = allowed_origin(origin)) out.emplace_back("Access-Control-Allow-Origin"sv, *allowed);
  if (allow_credentials_) out.emplace_back("Access-Control-Allow-Credentials"sv, "true"sv);
  if (has_expose_) out.emplace_back("Access-Control-Expose-Headers"sv, expose_headers_);
}

std::string_view Cors::vary(std::string_view upstream_vary, std::string& scratch) const {
  if (!add_vary_ || upstream_vary == "Origin"sv) return {};  // Traefik compares case-sensitively
  if (upstream_vary.empty()) return "Origin"sv;
  scratch.assign(upstream_vary).append(",Origin"sv);
  return scratch;
}

}  // namespace berth::proxy::middleware
