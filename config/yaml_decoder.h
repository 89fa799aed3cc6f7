// The shared layer under every config decoder: a ConfigNode tree (built from YAML, flags, later labels)
// and YamlDecoder, which reads it with case-insensitive keys and collects each problem with its place.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/text.h"

namespace berth::config {

/// One node of a config tree: null, a scalar, a map or a list, with the place it came from
/// ("file:line:col" for YAML, "flag --a.b" for flags).
struct ConfigNode {
  enum class Kind { kNull, kScalar, kMap, kList };

  Kind kind = Kind::kNull;
  std::string key;        ///< key in the parent map, as written (empty for list items and the root)
  std::string key_where;  ///< place of the key
  std::string value;      ///< text of a scalar
  std::string where;      ///< place of the value
  std::vector<ConfigNode> children;  ///< map entries or list items, in document order

  bool is_map() const { return kind == Kind::kMap; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_null() const { return kind == Kind::kNull; }

  /// The first map entry whose key equals `name` ignoring ASCII case, or nullptr.
  const ConfigNode* find(std::string_view name) const;
  ConfigNode* find(std::string_view name);
};

/// Parses the first YAML document of `text`; an empty document is a null node. A syntax error
/// returns Error{"file:line:col", message}; so does a document nested deeper than 64 levels or whose
/// aliases expand to more than 50,000 nodes (alias bombs). Never throws. Thread: any.
Result<ConfigNode> parse_yaml(std::string_view text, const std::string& file_name);

/// Sets the dotted `path` under the map `root` to the scalar `value`, creating maps on the way.
/// Keys match case-insensitively and keep their first spelling; a scalar met on the way becomes
/// a map (`--ping` then `--ping.entryPoint=x`), and `true` set on a map leaves the map. A key
/// `name[n]` is item n of the list `name` (`tls.domains[0].main`). How flags and labels become a
/// tree. Thread: any.
void set_path(ConfigNode& root, const std::vector<std::string>& path, std::string value,
              const std::string& where);

/// Lays `top` over `base`: maps merge key by key (case-insensitively, `top` wins); anything else
/// replaces, except that a `true` scalar over a map keeps the map (`--ping` over `ping: {...}`).
void overlay(ConfigNode& base, ConfigNode top);

/// Reads values out of a ConfigNode tree and appends every problem to `errors` with its place.
/// `path` arguments name the enclosing map for messages ("entryPoints.web"); the read_* functions
/// take a map entry, leave `out` untouched on a problem and return whether the read succeeded.
/// Thread: any (one decoder per decode).
class YamlDecoder {
 public:
  explicit YamlDecoder(std::vector<Error>& errors) : errors_(errors) {}

  /// Records a problem.
  void error(const std::string& where, std::string message);
  /// How many problems have been recorded so far (the caller compares counts to drop an element).
  size_t error_count() const { return errors_.size(); }

  /// The entries of a map (a null node is an empty map); anything else is reported ("expected a
  /// map"). A key repeated with other case is reported and its later copies are skipped.
  std::vector<const ConfigNode*> entries(const ConfigNode& node, std::string_view path);
  /// Reports `unknown key "k" in path` at the key's place.
  void unknown_key(const ConfigNode& entry, std::string_view path);

  /// A scalar (null reads as "").
  bool read_string(const ConfigNode& entry, std::string_view path, std::string& out);
  /// "true" / "false", case-insensitively.
  bool read_bool(const ConfigNode& entry, std::string_view path, bool& out);
  /// A decimal integer, optionally negative, within [min, max].
  bool read_int(const ConfigNode& entry, std::string_view path, int64_t& out, int64_t min, int64_t max);
  bool read_int(const ConfigNode& entry, std::string_view path, int& out, int min, int max);
  /// A Go-style duration ("10s", "1m30s") or a bare number of seconds.
  bool read_duration(const ConfigNode& entry, std::string_view path, Duration& out);
  /// A list of scalars, or one scalar holding a comma-separated list ("a,b"). `wheres`, if given,
  /// receives each item's place.
  bool read_list(const ConfigNode& entry, std::string_view path, std::vector<std::string>& out,
                 std::vector<std::string>* wheres = nullptr);
  /// A section that may be a map, null (present with defaults) or a bool (`ping: true`). Sets
  /// `enabled`; returns true when the entry is a map whose entries the caller should decode.
  bool read_section(const ConfigNode& entry, std::string_view path, bool& enabled);

  /// "path.key", or "key" at the top level.
  static std::string join(std::string_view path, std::string_view key);

 private:
  bool expect_scalar(const ConfigNode& entry, std::string_view path, std::string_view what);

  std::vector<Error>& errors_;
};

}  // namespace berth::config
