// acme.json; see storage.h. Field names and encodings are Traefik's (pkg/provider/acme/local_store.go):
// []byte fields are standard base64, certificate and key are base64 of PEM.
#include "acme/storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "acme/crypto.h"
#include "base/file.h"

namespace berth::acme {
namespace {

namespace json = boost::json;

std::string str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

const json::object* obj(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_object() ? &v->as_object() : nullptr;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

StorageFile load_storage(const std::string& path, std::vector<Error>& problems) {
  StorageFile out;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return out;  // not there yet
  if ((st.st_mode & 077) != 0) {
    if (::chmod(path.c_str(), 0600) == 0)
      problems.push_back(Error{path, "was readable by others; its mode is now 0600"});
    else
      problems.push_back(Error{path, "is readable by others and cannot be made 0600: " + errno_text()});
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    problems.push_back(Error{path, "cannot read the ACME storage: " + errno_text()});
    return out;
  }
  if (text.str().find_first_not_of(" \t\r\n") == std::string::npos) return out;
  boost::system::error_code ec;
  json::value root = json::parse(text.str(), ec);
  if (ec || !root.is_object()) {
    const std::string aside = path + ".corrupt-" + std::to_string(std::time(nullptr));
    const bool moved = ::rename(path.c_str(), aside.c_str()) == 0;
    problems.push_back(Error{path, "is not valid JSON (" + (ec ? ec.message() : std::string("not an object")) + "); " +
                                       (moved ? "moved aside to " + aside : "could not be moved aside: " + errno_text()) +
                                       "; certificates will be obtained anew"});
    return out;
  }
  for (const auto& [name, value] : root.as_object()) {
    if (!value.is_object()) continue;
    ResolverData data;
    const json::object& r = value.as_object();
    if (const json::object* a = obj(r, "Account")) {
      StoredAccount acc;
      acc.email = str(*a, "Email");
      acc.key_type = str(*a, "KeyType");
      auto key = base64_decode(str(*a, "PrivateKey"));
      if (!key) problems.push_back(Error{path, std::string(name) + ".Account.PrivateKey: " + key.error().message});
      else acc.private_key_der = std::move(*key);
      if (const json::object* reg = obj(*a, "Registration")) {
        acc.registration_uri = str(*reg, "uri");
        if (const json::value* body = reg->if_contains("body")) acc.registration_body = json::serialize(*body);
      }
      if (!acc.private_key_der.empty()) data.account = std::move(acc);
    }
    if (const json::value* certs = r.if_contains("Certificates"); certs && certs->is_array()) {
      for (const auto& c : certs->as_array()) {
        if (!c.is_object()) continue;
        const json::object& co = c.as_object();
        StoredCertificate sc;
        if (const json::object* d = obj(co, "domain")) {
          sc.main = str(*d, "main");
          if (const json::value* s = d->if_contains("sans"); s && s->is_array())
            for (const auto& x : s->as_array())
              if (x.is_string()) sc.sans.emplace_back(x.as_string());
        }
        auto cert = base64_decode(str(co, "certificate"));
        auto key = base64_decode(str(co, "key"));
        if (!cert || !key || sc.main.empty()) {
          problems.push_back(Error{path, std::string(name) + ": a certificate entry for \"" + sc.main +
                                             "\" cannot be decoded; it is skipped"});
          continue;
        }
        sc.cert_pem = std::move(*cert);
        sc.key_pem = std::move(*key);
        if (std::string store = str(co, "Store"); !store.empty()) sc.store = store;
        data.certificates.push_back(std::move(sc));
      }
    }
    out.emplace(std::string(name), std::move(data));
  }
  return out;
}

Result<bool> save_storage(const std::string& path, const StorageFile& data) {
  json::object root;
  for (const auto& [name, r] : data) {
    json::object entry;
    if (r.account) {
      json::object reg;
      boost::system::error_code ec;
      json::value body = json::parse(r.account->registration_body, ec);
      reg["body"] = ec ? json::value(json::object()) : body;
      reg["uri"] = r.account->registration_uri;
      entry["Account"] = json::object{{"Email", r.account->email},
                                      {"Registration", reg},
                                      {"PrivateKey", base64(r.account->private_key_der)},
                                      {"KeyType", r.account->key_type}};
    } else {
      entry["Account"] = nullptr;
    }
    json::array certs;
    for (const auto& c : r.certificates) {
      json::array sans;
      for (const auto& s : c.sans) sans.push_back(json::string(s));
      json::object domain{{"main", c.main}};
      if (!sans.empty()) domain["sans"] = sans;
      certs.push_back(json::object{{"domain", domain},
                                   {"certificate", base64(c.cert_pem)},
                                   {"key", base64(c.key_pem)},
                                   {"Store", c.store}});
    }
    entry["Certificates"] = certs;
    root[name] = entry;
  }
  return write_file_atomically(path, json::serialize(root), "the ACME storage");
}

}  // namespace berth::acme
