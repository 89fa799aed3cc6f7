// certificatesResolvers.<r>.acme.storage: Traefik's acme.json (resolver name -> {Account,
// Certificates}), so a file Traefik wrote is read as is (berth's own EC account keys are not readable
// by Traefik, which takes RSA ones only; its certificates are). Written atomically
// (temp file, fsync, rename, fsync of the directory) with mode 0600; a file that cannot be parsed
// is moved aside, never overwritten. Thread: control.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace berth::acme {

struct StoredAccount {
  std::string email;
  std::string registration_uri;   ///< the account URL at the CA
  std::string registration_body;  ///< the account object's JSON, kept as the CA sent it
  std::string private_key_der;    ///< PKCS#1 (RSA) or SEC1 (EC) DER
  std::string key_type;           ///< "4096", "EC256", ... (Traefik's KeyType; may be empty)
};

struct StoredCertificate {
  std::string main;
  std::vector<std::string> sans;
  std::string cert_pem;  ///< the chain
  std::string key_pem;
  std::string store = "default";
};

struct ResolverData {
  std::optional<StoredAccount> account;
  std::vector<StoredCertificate> certificates;
};

using StorageFile = std::map<std::string, ResolverData>;  ///< by resolver name

/// Reads `path`. A missing or empty file is an empty StorageFile. A file that does not parse is
/// renamed to `<path>.corrupt-<unix time>` and reported in `problem` (the result is then empty, so
/// certificates are obtained anew); so is an entry that cannot be decoded (only that entry is lost).
/// A file readable by group or others is made 0600 (and reported).
StorageFile load_storage(const std::string& path, std::vector<Error>& problems);

/// Writes the whole file atomically with mode 0600 (temp file, fsync, rename); a symlink is followed.
/// A bind-mounted file, which cannot be renamed over, is rewritten in place after the complete
/// temp copy is synced. On any other failure the old file is untouched.
Result<bool> save_storage(const std::string& path, const StorageFile& data);

}  // namespace berth::acme
