// SPDX-License-Identifier: Apache-2.0
// Builds a cfs::Tree for tests, and the object store its regular files point at: external
// files get the object name of their fs-verity digest as payload (and the digest, unless told
// otherwise), with the object written under `store`. Header-only; the test binary must link
// the tree and verity modules (every module that has a Tree does).
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>

#include "cfs/tree/object_name.h"
#include "cfs/tree/tree.h"
#include "cfs/verity/digest.h"

namespace cfs::testutil {

class TreeBuilder {
 public:
  /// `store`: directory objects are written to ("" = none are written).
  explicit TreeBuilder(std::string store = {}, verity::HashAlg alg = verity::HashAlg::kSha256)
      : store_(std::move(store)) {
    params_.alg = alg;
  }

  Tree& tree() { return tree_; }
  NodeId root() const { return tree_.root(); }

  NodeId dir(NodeId parent, const std::string& name, std::uint32_t mode = 0755) {
    Node n;
    n.mode = S_IFDIR | mode;
    n.nlink = 2;
    return add(parent, name, std::move(n));
  }

  struct FileOptions {
    bool digest = true;        ///< record the digest in the image
    bool write_object = true;  ///< write the object into the store
  };
  /// A regular file whose content lives in the store (the image records size, object name
  /// and, unless opts.digest is false, the digest).
  NodeId file(NodeId parent, const std::string& name, const std::string& content,
              FileOptions opts) {
    const verity::Digest d = digest_of(content);
    Node n;
    n.mode = S_IFREG | 0644;
    n.size = content.size();
    n.payload = tree::object_path(d);
    if (opts.digest) n.digest = d;
    if (opts.write_object && !store_.empty()) {
      const std::filesystem::path p = std::filesystem::path(store_) / n.payload;
      std::filesystem::create_directories(p.parent_path());
      std::ofstream(p, std::ios::binary)
          .write(content.data(), static_cast<std::streamsize>(content.size()));
    }
    return add(parent, name, std::move(n));
  }
  NodeId file(NodeId parent, const std::string& name, const std::string& content) {
    return file(parent, name, content, FileOptions{});
  }

  /// A regular file stored in the image itself.
  NodeId inline_file(NodeId parent, const std::string& name, const std::string& content) {
    Node n;
    n.mode = S_IFREG | 0644;
    n.size = content.size();
    n.content = content;
    return add(parent, name, std::move(n));
  }

  NodeId symlink(NodeId parent, const std::string& name, const std::string& target) {
    Node n;
    n.mode = S_IFLNK | 0777;
    n.payload = target;
    n.size = target.size();
    return add(parent, name, std::move(n));
  }

  /// Path of the object of `content` in the store.
  std::string object_of(const std::string& content) const {
    return (std::filesystem::path(store_) / tree::object_path(digest_of(content))).string();
  }

  verity::Digest digest_of(const std::string& content) const {
    return verity::digest_bytes(std::as_bytes(std::span(content.data(), content.size())), params_);
  }

 private:
  NodeId add(NodeId parent, const std::string& name, Node n) {
    NodeId id = tree_.add_node(std::move(n));
    tree_.link(parent, name, id);
    return id;
  }

  Tree tree_;
  std::string store_;
  verity::Params params_;
};

}  // namespace cfs::testutil
