// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/node_table.h"

#include <algorithm>
#include <cerrno>
#include <vector>

namespace cfs::vfs {

NodeTable::NodeTable() { nodes_.emplace(kMergedRoot, Node{}); }

MergedNode NodeTable::lookup(MergedNode parent, std::string_view name) {
  if (auto it = children_.find(Key{parent, name}); it != children_.end()) {
    ++nodes_.at(it->second).lookups;
    return it->second;
  }
  const MergedNode id = next_++;
  Node& n = nodes_[id];
  n.parent = parent;
  n.name = name;
  n.lookups = 1;
  children_.emplace(Key{parent, n.name}, id);
  ++nodes_.at(parent).children;
  return id;
}

void NodeTable::forget(MergedNode node, std::uint64_t n) {
  if (node == kMergedRoot) return;
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  it->second.lookups -= std::min(n, it->second.lookups);
  release(node);
}

Result<std::string> NodeTable::path(MergedNode node) const {
  std::vector<const std::string*> names;
  for (MergedNode id = node; id != kMergedRoot;) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || it->second.parent == 0)
      return fail_errno("node " + std::to_string(node), ESTALE);
    names.push_back(&it->second.name);
    id = it->second.parent;
  }
  std::string out;
  for (auto n = names.rbegin(); n != names.rend(); ++n) {
    if (!out.empty()) out.push_back('/');
    out += **n;
  }
  return out;
}

MergedNode NodeTable::unlink(MergedNode parent, std::string_view name) {
  auto it = children_.find(Key{parent, name});
  if (it == children_.end()) return 0;
  const MergedNode id = it->second;
  children_.erase(it);
  nodes_.at(id).parent = 0;
  --nodes_.at(parent).children;
  return id;
}

void NodeTable::remove(MergedNode parent, std::string_view name) {
  if (MergedNode id = unlink(parent, name)) release(id);
  release(parent);
}

void NodeTable::move(MergedNode parent, std::string_view name, MergedNode newparent,
                     std::string_view newname) {
  if (parent == newparent && name == newname) return;
  const MergedNode replaced = unlink(newparent, newname);
  if (const MergedNode id = unlink(parent, name)) {
    Node& n = nodes_.at(id);
    n.parent = newparent;
    n.name = newname;
    children_.emplace(Key{newparent, n.name}, id);
    ++nodes_.at(newparent).children;
  }
  if (replaced) release(replaced);
  release(parent);
}

void NodeTable::release(MergedNode id) {
  while (id != kMergedRoot) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || it->second.lookups > 0 || it->second.children > 0) return;
    const MergedNode parent = it->second.parent;
    if (parent != 0) children_.erase(Key{parent, it->second.name});
    nodes_.erase(it);
    if (parent == 0) return;  // detached: its old parent stopped counting it then
    --nodes_.at(parent).children;
    id = parent;
  }
}

}  // namespace cfs::vfs
