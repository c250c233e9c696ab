// SPDX-License-Identifier: Apache-2.0
#include "cfs/fsck/fsck.h"

#include <fcntl.h>
#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <tuple>
#include <unordered_set>

#include "cfs/erofs/reader.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/store/object_dirs.h"
#include "cfs/store/verify.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/util/temp_file.h"

namespace cfs::fsck {
namespace {

// One metacopy file's reference, as the mounts see it: the raw xattr values and the inode's size.
struct Ref {
  std::string path;  // first path in the image naming it
  std::string metacopy;
  std::optional<std::string> redirect;
  std::uint64_t size = 0;
};

// Every regular file carrying trusted.overlay.metacopy, depth-first in name order with an
// explicit stack (any depth), each inode once.
Result<std::vector<Ref>> metacopy_files(const erofs::Image& img) {
  std::vector<Ref> out;
  std::unordered_set<std::uint64_t> seen;
  std::vector<std::pair<std::uint64_t, std::string>> dirs{{img.root_nid(), ""}};
  while (!dirs.empty()) {
    // Named variables, not a structured binding: the lambda below captures them, which
    // clang before 16 refuses for bindings.
    std::uint64_t dir = dirs.back().first;
    std::string prefix = std::move(dirs.back().second);
    dirs.pop_back();
    std::vector<std::pair<std::uint64_t, std::string>> sub;
    std::optional<Error> inner;
    CFS_TRY(img.iterate_dir(dir, 0, [&](const erofs::DirentView& d) {
      if (d.name == "." || d.name == "..") return true;
      std::string path = prefix + "/" + std::string(d.name);
      if (d.file_type == erofs::FileType::kDirectory) {
        sub.emplace_back(d.nid, std::move(path));
        return true;
      }
      if (d.file_type != erofs::FileType::kRegular || !seen.insert(d.nid).second) return true;
      auto ino = img.inode(d.nid);
      if (!ino) {
        inner = std::move(ino).error();
        return false;
      }
      auto xs = img.xattrs(*ino);
      if (!xs) {
        inner = std::move(xs).error();
        return false;
      }
      Ref r;
      bool metacopy = false;
      for (const auto& x : *xs) {
        if (x.name == overlay::kMetacopy) {
          metacopy = true;
          r.metacopy = x.value;
        } else if (x.name == overlay::kRedirect) {
          r.redirect = x.value;
        }
      }
      if (!metacopy) return true;
      r.path = std::move(path);
      r.size = ino->size;
      out.push_back(std::move(r));
      return true;
    }));
    if (inner) return fail(std::move(*inner));
    dirs.insert(dirs.end(), std::make_move_iterator(sub.rbegin()),
                std::make_move_iterator(sub.rend()));
  }
  return out;
}

// The object a reference names, for reports: its store path, or the raw redirect.
std::string object_of(const Ref& r) {
  if (!r.redirect) return "";
  auto rel = overlay::redirect_object_path(*r.redirect);
  return rel ? std::string(*rel) : *r.redirect;
}

// What the mounts do with one reference, as a finding (nullopt: served). Errors are
// operational.
Result<std::optional<Finding>> check_ref(const store::ObjectDirs& dirs, const Ref& r,
                                         bool verify_digest, unsigned threads) {
  const std::string object = object_of(r);
  const std::string file = " (file " + r.path + ")";
  auto meta = overlay::Metacopy::decode(r.metacopy);
  if (!meta)
    return Finding{"metacopy", object,
                   "trusted.overlay.metacopy: " + meta.error().message() + file};
  auto b = dirs.open_backing(r.metacopy, r.redirect, false);
  if (!b) {
    if (auto kind = store::problem_kind(b.error()))
      return Finding{std::move(*kind), object, b.error().message() + file};
    if (b.error().is_errno(EIO) || b.error().is_errno(ERANGE))
      return Finding{"metacopy", object, b.error().message() + file};
    return fail(std::move(b).error());
  }
  store::VerifyOptions vo;
  vo.size = r.size;
  if (verify_digest) vo.digest = meta->digest;
  vo.threads = threads;
  CFS_ASSIGN(auto problem, store::verify_fd(b->fd.get(), "object " + b->object, vo));
  if (!problem) return std::nullopt;
  return Finding{std::move(problem->kind), object, problem->detail + file};
}

// Runs `check(i)` for i in [0, n) over the CPUs: many items one per core, few items each
// spread over the cores (`threads` for one item). Collects findings and the first error.
template <typename F>
void run_all(std::size_t n, Report& rep, const Options& opts, F&& check) {
  const unsigned cpus = std::max(1u, sys::available_cpus());
  const unsigned outer = n >= cpus ? cpus : 1;
  const unsigned inner = outer == 1 ? cpus : 1;
  std::vector<Result<std::optional<Finding>>> results(n, std::optional<Finding>{});
  std::atomic<std::uint64_t> done{0};
  parallel_for(n, outer, [&](std::size_t i) {
    results[i] = check(i, inner);
    if (opts.progress) opts.progress(++done, n);
  });
  rep.checked += n;
  for (auto& r : results) {
    if (!r) {
      if (!rep.error) rep.error = std::move(r).error();
    } else if (*r) {
      rep.findings.push_back(std::move(**r));
    }
  }
}

}  // namespace

Report check_image(const std::string& path, const std::vector<std::string>& basedirs,
                   bool verify_digests, const Options& opts) {
  Report rep;
  auto img = erofs::Image::open(path);
  if (!img) {
    if (img.error().is(Errc::kCorruptImage))
      rep.findings.push_back({"image", "", img.error().message()});
    else
      rep.error = img.error();
    return rep;
  }
  if (auto st = erofs::check_image(*img); !st) {
    rep.findings.push_back({"image", "", st.error().message()});
    return rep;
  }
  if (auto tree = erofs::load_tree(*img); !tree) {
    rep.findings.push_back({"image", "", tree.error().message()});
    return rep;
  }
  if (basedirs.empty()) return rep;  // structure only
  auto refs = metacopy_files(*img);
  if (!refs) {
    rep.findings.push_back({"image", "", refs.error().message()});
    return rep;
  }
  auto dirs = store::ObjectDirs::open(basedirs);
  if (!dirs) {
    rep.error = dirs.error();
    return rep;
  }
  // Each distinct (object, metacopy, size) once; one object recorded with two digests is a
  // problem of the image.
  std::map<std::tuple<std::string, std::string, std::uint64_t>, std::size_t> unique;
  std::map<std::string, std::optional<verity::Digest>> digest_of;
  std::vector<const Ref*> work;
  for (const Ref& r : *refs) {
    const std::string object = object_of(r);
    if (!unique.emplace(std::make_tuple(object, r.metacopy, r.size), work.size()).second) continue;
    work.push_back(&r);
    auto digest = overlay::Metacopy::read_digest(r.metacopy);
    auto [it, inserted] = digest_of.emplace(object, digest);
    if (!inserted && digest && it->second && *digest != *it->second)
      rep.findings.push_back({"conflict", object, "referenced with different digests"});
    if (!verify_digests && inserted && digest) {
      auto named = tree::parse_object_path(object);
      if (named && *named != *digest)
        rep.findings.push_back({"conflict", object,
                                "object name does not match the recorded digest " + digest->hex()});
    }
  }
  run_all(work.size(), rep, opts, [&](std::size_t i, unsigned threads) {
    return check_ref(*dirs, *work[i], verify_digests, threads);
  });
  return rep;
}

Report check_store(const std::string& dir, const Options& opts) {
  Report rep;
  auto root = sys::open(dir, O_RDONLY | O_DIRECTORY);
  auto dirs = store::ObjectDirs::open({dir});
  if (!root || !dirs) {
    rep.error = !root ? root.error() : dirs.error();
    return rep;
  }
  auto entries = store::walk(root->get(), dir);
  if (!entries) {
    rep.error = entries.error();
    return rep;
  }
  std::vector<std::string> objects;
  for (auto& e : *entries) {
    switch (e.kind) {
      case store::EntryKind::kObject:
        objects.push_back(std::move(e.rel));
        break;
      case store::EntryKind::kTemp: {
        if (opts.repair) {
          auto removed = temp::remove_if_stale(root->get(), e.rel);
          if (!removed) {
            if (!rep.error) rep.error = removed.error();
            break;
          }
          if (*removed) {
            rep.removed.push_back(std::move(e.rel));
            break;
          }
          rep.findings.push_back({"stray", e.rel, "temporary file in use by a running writer"});
          break;
        }
        rep.findings.push_back(
            {"stray", e.rel, "temporary file (interrupted add; cfs fsck --repair removes it)"});
        break;
      }
      case store::EntryKind::kStray:
        rep.findings.push_back({"stray", e.rel, e.why});
        break;
    }
  }
  run_all(objects.size(), rep, opts,
          [&](std::size_t i, unsigned threads) -> Result<std::optional<Finding>> {
            store::VerifyOptions vo;
            vo.digest = tree::parse_object_path(objects[i]);
            vo.threads = threads;
            CFS_ASSIGN(auto problem, store::verify_object(*dirs, objects[i], vo));
            if (!problem) return std::nullopt;
            return Finding{std::move(problem->kind), objects[i], std::move(problem->detail)};
          });
  return rep;
}

void merge(Report& into, Report&& from, const std::string& image) {
  for (auto& f : from.findings) {
    if (f.kind == "image") f.detail = image + ": " + f.detail;
    into.findings.push_back(std::move(f));
  }
  into.removed.insert(into.removed.end(), from.removed.begin(), from.removed.end());
  into.checked += from.checked;
  if (from.error && !into.error) into.error = std::move(from.error);
}

}  // namespace cfs::fsck
