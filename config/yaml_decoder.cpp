// The config tree and its reader; see yaml_decoder.h. yaml-cpp exceptions stop here.
#include "config/yaml_decoder.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace berth::config {
namespace {

constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 2'000'000;
// Nodes reached through a repeated alias; bounds "billion laughs" documents long before kMaxNodes.
constexpr size_t kMaxAliasedNodes = 50'000;

std::string place(const std::string& file, const YAML::Mark& mark) {
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// A limit hit (or a malformed merge key) while converting; reported like a syntax error.
struct TreeLimit {
  std::string where;
  std::string message;
};

class TreeBuilder {
 public:
  explicit TreeBuilder(const std::string& file) : file_(file) {}

  // `fallback` is the place of the key: yaml-cpp gives an empty value (`key:`) no mark of its own.
  void build(const YAML::Node& in, ConfigNode& out, const std::string& fallback, int depth, bool aliased) {
    const YAML::Mark mark = in.Mark();
    out.where = mark.is_null() ? fallback : place(file_, mark);
    if (depth > kMaxDepth) throw TreeLimit{out.where, "document is nested too deeply"};
    if (++nodes_ > kMaxNodes) throw TreeLimit{out.where, "document expands to too many nodes"};
    // An alias shares its anchor's node, so a collection met twice at the same position is a copy.
    if ((in.IsMap() || in.IsSequence()) && !mark.is_null() && !collections_.insert(mark.pos).second) aliased = true;
    if (aliased && ++aliased_nodes_ > kMaxAliasedNodes)
      throw TreeLimit{out.where, "aliases expand to too many nodes"};
    switch (in.Type()) {
      case YAML::NodeType::Scalar:
        out.kind = ConfigNode::Kind::kScalar;
        out.value = in.Scalar();
        break;
      case YAML::NodeType::Sequence:
        out.kind = ConfigNode::Kind::kList;
        out.children.reserve(in.size());
        for (const auto& item : in) {
          out.children.emplace_back();
          build(item, out.children.back(), out.where, depth + 1, aliased);
        }
        break;
      case YAML::NodeType::Map:
      {
        out.kind = ConfigNode::Kind::kMap;
        out.children.reserve(in.size());
        std::vector<ConfigNode> merges;
        for (const auto& kv : in) {
          const bool is_merge = kv.first.IsScalar() && kv.first.Scalar() == "<<" && kv.first.Tag() != "!";
          ConfigNode& child = is_merge ? merges.emplace_back() : out.children.emplace_back();
          child.key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
          const YAML::Mark key_mark = kv.first.Mark();
          child.key_where = key_mark.is_null() ? out.where : place(file_, key_mark);
          build(kv.second, child, child.key_where, depth + 1, aliased);
        }
        for (auto& merge : merges) apply_merge_key(out, std::move(merge));
        break;
      }
      default:
        out.kind = ConfigNode::Kind::kNull;
        break;
    }
  }

 private:
  // yaml-cpp 0.7 leaves merge keys (`<<: *defaults`) to the reader; Traefik's YAML library honours
  // them, so keys of the merged map(s) fill in whatever `out` does not set itself.
  static void apply_merge_key(ConfigNode& out, ConfigNode merge) {
    std::vector<ConfigNode> sources;
    if (merge.is_map()) sources.push_back(std::move(merge));
    else if (merge.kind == ConfigNode::Kind::kList) sources = std::move(merge.children);
    else if (!merge.is_null()) throw TreeLimit{merge.where, "a merge key (<<) needs a map or a list of maps"};
    for (auto& source : sources) {
      if (!source.is_map()) throw TreeLimit{source.where, "a merge key (<<) needs a map or a list of maps"};
      for (auto& entry : source.children)
        if (out.find(entry.key) == nullptr) out.children.push_back(std::move(entry));
    }
  }

  const std::string& file_;
  size_t nodes_ = 0;
  size_t aliased_nodes_ = 0;
  std::unordered_set<int> collections_;
};

}  // namespace

const ConfigNode* ConfigNode::find(std::string_view name) const {
  for (const auto& child : children)
    if (iequals(child.key, name)) return &child;
  return nullptr;
}

ConfigNode* ConfigNode::find(std::string_view name) {
  return const_cast<ConfigNode*>(static_cast<const ConfigNode*>(this)->find(name));
}

Result<ConfigNode> parse_yaml(std::string_view text, const std::string& file_name) {
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    ConfigNode root;
    TreeBuilder(file_name).build(doc, root, file_name + ":1:1", 0, false);
    return root;
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return Error{file_name, e.msg};
    return Error{place(file_name, e.mark), e.msg};
  } catch (const TreeLimit& e) {
    return Error{e.where, e.message};
  } catch (const std::exception& e) {
    return Error{file_name, e.what()};
  }
}

namespace {

// "domains[2]" -> {"domains", 2}; nullopt when `key` has no "[n]" suffix.
std::optional<std::pair<std::string_view, size_t>> split_index(std::string_view key) {
  if (!key.ends_with(']')) return std::nullopt;
  const size_t open = key.rfind('[');
  if (open == std::string_view::npos || open == 0) return std::nullopt;
  auto n = parse_uint(key.substr(open + 1, key.size() - open - 2));
  if (!n || *n > 10'000) return std::nullopt;
  return std::pair{key.substr(0, open), static_cast<size_t>(*n)};
}

// The child `key` of `node` (made a map if it is not one), created if missing.
ConfigNode& child_of(ConfigNode& node, std::string_view key, const std::string& where) {
  if (!node.is_map()) {
    node.kind = ConfigNode::Kind::kMap;
    node.value.clear();
    node.children.clear();
  }
  if (ConfigNode* child = node.find(key)) return *child;
  ConfigNode& child = node.children.emplace_back();
  child.key = std::string(key);
  child.key_where = where;
  return child;
}

}  // namespace

void set_path(ConfigNode& root, const std::vector<std::string>& path, std::string value,
              const std::string& where) {
  ConfigNode* node = &root;
  for (const auto& key : path) {
    auto indexed = split_index(key);
    if (!indexed) {
      node = &child_of(*node, key, where);
      continue;
    }
    // "name[n]": item n of the list `name`. Items stay sorted by n; their key holds n while the tree
    // is built (list items have no key otherwise) and gaps simply close up.
    ConfigNode& list = child_of(*node, indexed->first, where);
    if (list.kind != ConfigNode::Kind::kList) {
      list.kind = ConfigNode::Kind::kList;
      list.value.clear();
      list.children.clear();
      list.where = where;
    }
    const std::string n = std::to_string(indexed->second);
    auto it = std::find_if(list.children.begin(), list.children.end(), [&](const ConfigNode& item) {
      return parse_uint(item.key).value_or(0) >= indexed->second;
    });
    if (it == list.children.end() || it->key != n) {
      it = list.children.emplace(it);
      it->key = n;
      it->key_where = where;
      it->where = where;
    }
    node = &*it;
  }
  if (node->is_map() && parse_bool(value) == true) return;  // "tls=true" beside "tls.options=x"
  node->kind = ConfigNode::Kind::kScalar;
  node->value = std::move(value);
  node->where = where;
  node->children.clear();
}

void overlay(ConfigNode& base, ConfigNode top) {
  if (base.is_map() && top.is_map()) {
    for (auto& child : top.children) {
      if (ConfigNode* existing = base.find(child.key))
        overlay(*existing, std::move(child));
      else
        base.children.push_back(std::move(child));
    }
    return;
  }
  if (base.is_map() && top.is_scalar() && parse_bool(top.value) == true) return;
  // Keep the key as the file spelled it; the value (and its place) come from `top`.
  std::string key = std::move(base.key);
  std::string key_where = std::move(base.key_where);
  base = std::move(top);
  if (!key.empty()) {
    base.key = std::move(key);
    base.key_where = std::move(key_where);
  }
}

void YamlDecoder::error(const std::string& where, std::string message) {
  errors_.push_back(Error{where, std::move(message)});
}

std::string YamlDecoder::join(std::string_view path, std::string_view key) {
  std::string out(path);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

std::vector<const ConfigNode*> YamlDecoder::entries(const ConfigNode& node, std::string_view path) {
  std::vector<const ConfigNode*> out;
  if (node.is_null()) return out;
  if (!node.is_map()) {
    error(node.where, path.empty() ? std::string("expected a map at the top level")
                                   : "expected a map for " + std::string(path));
    return out;
  }
  out.reserve(node.children.size());
  std::unordered_map<std::string, const ConfigNode*> seen;
  for (const auto& child : node.children) {
    const ConfigNode* first = seen.try_emplace(to_lower(child.key), &child).first->second;
    if (first != &child) {
      error(child.key_where, "duplicate key \"" + child.key + "\" in " +
                                 (path.empty() ? std::string("the top level") : std::string(path)) +
                                 " (first at " + first->key_where + ")");
      continue;
    }
    out.push_back(&child);
  }
  return out;
}

void YamlDecoder::unknown_key(const ConfigNode& entry, std::string_view path) {
  error(entry.key_where, "unknown key \"" + entry.key + "\"" +
                             (path.empty() ? std::string(" at the top level") : " in " + std::string(path)));
}

bool YamlDecoder::expect_scalar(const ConfigNode& entry, std::string_view path, std::string_view what) {
  if (entry.is_scalar()) return true;
  error(entry.where, "expected " + std::string(what) + " for " + join(path, entry.key));
  return false;
}

bool YamlDecoder::read_string(const ConfigNode& entry, std::string_view path, std::string& out) {
  if (entry.is_null()) {
    out.clear();
    return true;
  }
  if (!expect_scalar(entry, path, "a string")) return false;
  out = entry.value;
  return true;
}

bool YamlDecoder::read_bool(const ConfigNode& entry, std::string_view path, bool& out) {
  if (!expect_scalar(entry, path, "true or false")) return false;
  auto value = parse_bool(trim(entry.value));
  if (!value) {
    error(entry.where, "invalid boolean \"" + entry.value + "\" for " + join(path, entry.key));
    return false;
  }
  out = *value;
  return true;
}

bool YamlDecoder::read_int(const ConfigNode& entry, std::string_view path, int64_t& out, int64_t min,
                           int64_t max) {
  if (!expect_scalar(entry, path, "an integer")) return false;
  std::string_view text = trim(entry.value);
  const bool negative = !text.empty() && text.front() == '-';
  if (negative || (!text.empty() && text.front() == '+')) text.remove_prefix(1);
  auto magnitude = parse_uint(text);
  constexpr uint64_t kLimit = uint64_t(std::numeric_limits<int64_t>::max());
  if (!magnitude || *magnitude > kLimit) {
    error(entry.where, "invalid integer \"" + entry.value + "\" for " + join(path, entry.key));
    return false;
  }
  const int64_t value = negative ? -int64_t(*magnitude) : int64_t(*magnitude);
  if (value < min || value > max) {
    error(entry.where, "value " + std::to_string(value) + " for " + join(path, entry.key) +
                           " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return false;
  }
  out = value;
  return true;
}

bool YamlDecoder::read_int(const ConfigNode& entry, std::string_view path, int& out, int min, int max) {
  int64_t value = 0;
  if (!read_int(entry, path, value, min, max)) return false;
  out = static_cast<int>(value);
  return true;
}

bool YamlDecoder::read_duration(const ConfigNode& entry, std::string_view path, Duration& out) {
  if (!expect_scalar(entry, path, "a duration")) return false;
  auto value = parse_duration(entry.value);
  if (!value) {
    error(entry.where, "invalid duration \"" + entry.value + "\" for " + join(path, entry.key));
    return false;
  }
  out = *value;
  return true;
}

bool YamlDecoder::read_list(const ConfigNode& entry, std::string_view path, std::vector<std::string>& out,
                            std::vector<std::string>* wheres) {
  std::vector<std::string> items;
  std::vector<std::string> places;
  if (entry.is_scalar()) {
    items = split_list(entry.value);
    places.assign(items.size(), entry.where);
  } else if (entry.kind == ConfigNode::Kind::kList) {
    bool ok = true;
    for (const auto& item : entry.children) {
      if (!item.is_scalar()) {
        error(item.where, "expected a string in the list " + join(path, entry.key));
        ok = false;
        continue;
      }
      std::string_view text = trim(item.value);
      if (text.empty()) continue;
      items.emplace_back(text);
      places.push_back(item.where);
    }
    if (!ok) return false;
  } else if (!entry.is_null()) {
    error(entry.where, "expected a list for " + join(path, entry.key));
    return false;
  }
  out = std::move(items);
  if (wheres != nullptr) *wheres = std::move(places);
  return true;
}

bool YamlDecoder::read_section(const ConfigNode& entry, std::string_view path, bool& enabled) {
  switch (entry.kind) {
    case ConfigNode::Kind::kNull:
      enabled = true;
      return false;
    case ConfigNode::Kind::kMap:
      enabled = true;
      return true;
    case ConfigNode::Kind::kScalar:
      read_bool(entry, path, enabled);
      return false;
    case ConfigNode::Kind::kList:
      break;
  }
  error(entry.where, "expected a map or true/false for " + join(path, entry.key));
  return false;
}

}  // namespace berth::config
