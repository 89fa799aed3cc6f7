// Merging one kind of named element (routers, services, middlewares, transports, TLS options,
// TLS stores) from several providers or files: a name defined twice with different content is
// an error naming both places, and both copies are dropped, as Traefik does across providers.
// Within one directory of the file provider the first file wins instead, as in Traefik: the
// later copy is dropped and reported. Thread: control.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::config {

/// What a second, different definition of a name does.
enum class Redefinition : uint8_t {
  kConflict,   ///< both copies are dropped (different providers, Traefik's rule)
  kFirstWins,  ///< the later copy is dropped (the files of one file provider directory)
};

/// Folds `from` (and the names it already found conflicting) into `into`; `same(a, b)` compares
/// two definitions, places aside. `conflicts` keeps the dropped names with their first place, so a
/// third definition stays dropped too.
template <typename T, typename Same>
void merge_named(std::string_view kind, std::map<std::string, T>& into, std::map<std::string, std::string>& conflicts,
                 std::map<std::string, T>&& from, std::map<std::string, std::string>&& from_conflicts,
                 std::vector<Error>& errors, Same&& same, Redefinition redefinition = Redefinition::kConflict) {
  auto report = [&](const std::string& name, const std::string& first, const std::string& second) {
    errors.push_back(Error{second, std::string(kind) + " " + name + " is defined in " + first + " and " + second +
                                       " with different configurations"});
  };
  for (auto& [name, where] : from_conflicts) {
    if (auto existing = into.find(name); existing != into.end()) {
      report(name, existing->second.where, where);
      into.erase(existing);
    }
    conflicts.emplace(name, std::move(where));
  }
  for (auto& [name, element] : from) {
    if (auto conflict = conflicts.find(name); conflict != conflicts.end()) {
      report(name, conflict->second, element.where);
      continue;
    }
    auto existing = into.find(name);
    if (existing == into.end()) {
      into.emplace(name, std::move(element));
      continue;
    }
    if (same(existing->second, element)) continue;
    if (redefinition == Redefinition::kFirstWins) {
      errors.push_back(Error{element.where, std::string(kind) + " " + name + " is defined already in " +
                                                existing->second.where + ": the first definition is used"});
      continue;
    }
    report(name, existing->second.where, element.where);
    conflicts.emplace(name, existing->second.where);
    into.erase(existing);
  }
}

}  // namespace berth::config
