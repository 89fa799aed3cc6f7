// Route table construction and lookup; see route_table.h.
#include "proxy/router/route_table.h"

#include <algorithm>

#include "base/text.h"

namespace berth::proxy::router {

void RouteTable::add(std::shared_ptr<const Route> route) {
  std::vector<std::string> hosts;
  const Route* r = route.get();
  if (route->matcher->required_hosts(hosts)) {
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    for (auto& h : hosts) {
      if (h.rfind("*.", 0) == 0) wildcard_[h.substr(1)].push_back(r);
      else exact_[h].push_back(r);
    }
  } else {
    any_host_.push_back(r);
  }
  routes_.push_back(std::move(route));
}

void RouteTable::freeze() {
  auto order = [](const Route* a, const Route* b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->name < b->name;
  };
  for (auto& [_, list] : exact_) std::sort(list.begin(), list.end(), order);
  for (auto& [_, list] : wildcard_) std::sort(list.begin(), list.end(), order);
  std::sort(any_host_.begin(), any_host_.end(), order);
}

const Route* RouteTable::first_match(const List& a, const List& b, const RequestView& req) {
  // Both lists are sorted; walk them as one merged list so priority decides across them.
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const Route* next;
    if (j >= b.size() || (i < a.size() && (a[i]->priority > b[j]->priority ||
                                           (a[i]->priority == b[j]->priority && a[i]->name < b[j]->name))))
      next = a[i++];
    else
      next = b[j++];
    if (next->matcher->matches(req)) return next;
  }
  return nullptr;
}

const Route* RouteTable::match(const RequestView& req) const {
  static const List kEmpty;
  char lower[256];
  std::string_view host = req.host;
  const List* exact = &kEmpty;
  const List* wild = &kEmpty;
  if (!host.empty() && host.size() <= sizeof lower && !(exact_.empty() && wildcard_.empty())) {
    for (size_t i = 0; i < host.size(); ++i) lower[i] = lower_ascii(host[i]);
    std::string_view key(lower, host.size());
    if (auto it = exact_.find(key); it != exact_.end()) exact = &it->second;
    if (size_t dot = key.find('.'); dot != std::string_view::npos && !wildcard_.empty())
      if (auto it = wildcard_.find(key.substr(dot)); it != wildcard_.end()) wild = &it->second;
  }
  if (wild->empty()) return first_match(*exact, any_host_, req);
  if (exact->empty()) return first_match(*wild, any_host_, req);
  // Rare: both an exact and a wildcard list apply; merge all three in priority order.
  const Route* best = nullptr;
  for (const List* l : {exact, wild, &any_host_}) {
    for (const Route* r : *l) {
      if (best && (r->priority < best->priority || (r->priority == best->priority && r->name > best->name))) break;
      if (r->matcher->matches(req)) {
        best = r;
        break;
      }
    }
  }
  return best;
}

}  // namespace berth::proxy::router
