// HTTPS for the ACME client; see https_client.h.
#include "acme/https_client.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <cstdlib>
#include <ctime>

namespace berth::acme {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr size_t kMaxBody = 16 << 20;

// Link: <url>;rel="alternate", <url2>;rel="up" -> the alternate URLs (RFC 8555 7.4.2).
void read_links(std::string_view value, std::vector<std::string>& out) {
  while (!value.empty()) {
    const size_t open = value.find('<');
    const size_t close = value.find('>', open);
    if (open == std::string_view::npos || close == std::string_view::npos) return;
    const std::string_view url = value.substr(open + 1, close - open - 1);
    size_t next = value.find(',', close);
    const std::string_view params = value.substr(close + 1, next == std::string_view::npos ? next : next - close - 1);
    if (params.find("rel=\"alternate\"") != std::string_view::npos || params.find("rel=alternate") != std::string_view::npos)
      out.emplace_back(url);
    if (next == std::string_view::npos) return;
    value.remove_prefix(next + 1);
  }
}

template <typename Stream>
asio::awaitable<Result<HttpsResponse>> exchange(Stream& stream, http::request<http::string_body>& req,
                                                const std::string& url) {
  boost::system::error_code ec;
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Error{url, "sending the request: " + ec.message()};
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBody);
  if (req.method() == http::verb::head) parser.skip(true);  // a HEAD answer's length describes no body
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Error{url, "reading the answer: " + ec.message()};
  auto& res = parser.get();
  HttpsResponse out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& field : res) {
    const auto name = field.name_string();
    const std::string_view value(field.value().data(), field.value().size());
    if (beast::iequals(name, "Location")) out.location = value;
    else if (beast::iequals(name, "Replay-Nonce")) out.replay_nonce = value;
    else if (beast::iequals(name, "Retry-After")) out.retry_after = value;
    else if (beast::iequals(name, "Content-Type")) out.content_type = value;
    else if (beast::iequals(name, "Link")) read_links(value, out.alternates);
  }
  co_return out;
}

}  // namespace

struct HttpsClient::Impl {
  asio::io_context& io;
  asio::ssl::context ssl{asio::ssl::context::tls_client};
  explicit Impl(asio::io_context& i) : io(i) {}
};

HttpsClient::HttpsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsClient::~HttpsClient() = default;

Result<std::unique_ptr<HttpsClient>> HttpsClient::create(asio::io_context& io, const std::vector<std::string>& ca_files) {
  auto impl = std::make_unique<Impl>(io);
  boost::system::error_code ec;
  impl->ssl.set_default_verify_paths(ec);
  impl->ssl.set_verify_mode(asio::ssl::verify_peer);
  std::vector<std::string> files = ca_files;
  if (const char* env = std::getenv("LEGO_CA_CERTIFICATES"))
    for (auto& f : split_list(env, ':')) files.push_back(f);
  for (const auto& f : files) {
    impl->ssl.load_verify_file(f, ec);
    if (ec) return Error{f, "cannot load CA certificates for the ACME server: " + ec.message()};
  }
  return std::unique_ptr<HttpsClient>(new HttpsClient(std::move(impl)));
}

asio::awaitable<Result<HttpsResponse>> HttpsClient::request(std::string method, std::string url, std::string body,
                                                            std::string content_type, std::string accept,
                                                            Duration timeout) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) co_return Error{url, "not a URL"};
  const bool tls = parsed->scheme() == "https";
  if (!tls && parsed->scheme() != "http") co_return Error{url, "not an https:// URL"};
  const std::string host(parsed->host_address());
  const std::string port = parsed->has_port() ? std::string(parsed->port()) : (tls ? "443" : "80");
  std::string target(parsed->encoded_path());
  if (target.empty()) target = "/";
  if (parsed->has_query()) target += "?" + std::string(parsed->encoded_query());

  http::request<http::string_body> req{method == "POST" ? http::verb::post
                                       : method == "HEAD" ? http::verb::head
                                                          : http::verb::get,
                                       target, 11};
  req.set(http::field::host, parsed->has_port() ? host + ":" + port : host);
  req.set(http::field::user_agent, "berth/" BERTH_VERSION " (ACME)");
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  if (!accept.empty()) req.set(http::field::accept, accept);
  req.set(http::field::connection, "close");
  req.body() = std::move(body);
  req.prepare_payload();

  boost::system::error_code ec;
  asio::ip::tcp::resolver resolver(impl_->io);
  auto endpoints = co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Error{url, "cannot resolve " + host + ": " + ec.message()};
  beast::tcp_stream tcp(impl_->io);
  tcp.expires_after(timeout);
  co_await tcp.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Error{url, "cannot connect: " + ec.message()};
  if (!tls) co_return co_await exchange(tcp, req, url);

  beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp), impl_->ssl);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) co_return Error{url, "cannot set SNI"};
  stream.set_verify_callback(asio::ssl::host_name_verification(host));
  co_await stream.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Error{url, "TLS handshake: " + ec.message()};
  auto out = co_await exchange(stream, req, url);
  stream.next_layer().expires_after(Duration(1000));
  co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));  // a missing close_notify is fine
  co_return out;
}

std::optional<Duration> parse_retry_after(std::string_view value) {
  value = trim(value);
  if (auto n = parse_uint(value)) return Duration(static_cast<int64_t>(std::min<uint64_t>(*n, 86'400)) * 1000);
  std::tm tm{};
  const std::string text(value);
  if (strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  const auto left = std::chrono::duration_cast<Duration>(at - std::chrono::system_clock::now());
  return std::max(left, Duration(0));
}

}  // namespace berth::acme
