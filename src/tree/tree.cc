// SPDX-License-Identifier: Apache-2.0
#include "cfs/tree/tree.h"

#include <algorithm>

#include "cfs/util/path.h"

namespace cfs {

void Node::set_xattr(std::string key, std::string value) {
  for (auto& x : xattrs) {
    if (x.key == key) {
      x.value = std::move(value);
      return;
    }
  }
  xattrs.push_back({std::move(key), std::move(value)});
}

const Xattr* Node::find_xattr(std::string_view key) const noexcept {
  for (const auto& x : xattrs)
    if (x.key == key) return &x;
  return nullptr;
}

Tree::Tree() {
  Node root;
  root.mode = S_IFDIR | 0755;
  root.nlink = 2;
  root.parent = 0;
  nodes_.push_back(std::move(root));
}

NodeId Tree::add_node(Node n) {
  nodes_.push_back(std::move(n));
  return static_cast<NodeId>(nodes_.size() - 1);
}

bool Tree::link(NodeId dir, std::string name, NodeId child, bool hardlink) {
  auto& kids = nodes_[dir].children;
  // Sources mostly insert in sorted order, so check the end first.
  auto it = (kids.empty() || name_less(kids.back().name, name))
                ? kids.end()
                : std::lower_bound(kids.begin(), kids.end(), name,
                                   [](const Entry& e, const std::string& n) { return e.name < n; });
  if (it != kids.end() && it->name == name) return false;
  if (!hardlink) nodes_[child].parent = dir;
  kids.insert(it, Entry{std::move(name), child, hardlink});
  return true;
}

const Entry* Tree::find_child(NodeId dir, std::string_view name) const {
  const auto& kids = nodes_[dir].children;
  auto it = std::lower_bound(kids.begin(), kids.end(), name,
                             [](const Entry& e, std::string_view n) { return e.name < n; });
  if (it == kids.end() || it->name != name) return nullptr;
  return &*it;
}

std::optional<NodeId> Tree::lookup(std::string_view path) const {
  NodeId cur = root();
  for (std::size_t pos = 0; auto name = next_component(path, pos);) {
    const Entry* e = find_child(cur, *name);
    if (!e) return std::nullopt;
    cur = e->node;
  }
  return cur;
}

}  // namespace cfs
