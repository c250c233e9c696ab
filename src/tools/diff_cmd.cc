// SPDX-License-Identifier: Apache-2.0
// `cfs diff [--repo R] [--json] A B`: which paths of two images, dumps or repository images
// differ, and in which fields. Exit status like diff(1): 0 equal, 1 different, 2 trouble.
#include <sys/stat.h>

#include <optional>
#include <string>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/diff/diff.h"
#include "tools/command.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

constexpr int kExitDifferent = 1;
constexpr int kExitTrouble = 2;

const char* status_word(diff::PathDiff::Status s) {
  switch (s) {
    case diff::PathDiff::Status::kOnlyA:
      return "removed";
    case diff::PathDiff::Status::kOnlyB:
      return "added";
    default:
      return "changed";
  }
}

std::string fields_json(const std::vector<diff::FieldDiff>& fields) {
  std::string out = "[";
  for (std::size_t i = 0; i < fields.size(); ++i)
    out += fmt::format("{}{{\"field\": {}, \"a\": {}, \"b\": {}}}", i ? ", " : "",
                       json::string(fields[i].field), json::string(fields[i].a),
                       json::string(fields[i].b));
  return out + "]";
}

std::string or_none(const std::string& v) { return v.empty() ? "(none)" : v; }

int run_diff(int argc, char** argv) {
  CLI::App app{
      "Compare two composefs images, dumps or repository images: which paths differ "
      "and in which fields (type, mode, owner, mtime, xattrs, content, hardlinks) and "
      "how the images themselves differ (format version, digest). Exit status 0: "
      "equal, 1: different, 2: trouble.",
      "cfs diff"};
  std::string repo_path, a, b;
  bool json = false;
  add_repo_option(app, repo_path);
  app.add_option("A", a, "image file, dump file, or image name in the repository")->required();
  app.add_option("B", b, "the same, compared with A")->required();
  app.add_flag("--json", json, "print JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  auto trouble = [](const Error& e) {
    fmt::print(stderr, "cfs: error: {}\n", e.message());
    return kExitTrouble;
  };
  // A repository is only opened when an argument is not a file.
  std::optional<repo::Repository> repo;
  struct stat st {};
  if (::stat(a.c_str(), &st) != 0 || ::stat(b.c_str(), &st) != 0) {
    auto r = open_repo(repo_path, {});
    if (r) {
      repo.emplace(std::move(*r));
    } else if (!repo_path.empty()) {
      return trouble(r.error());
    }
  }
  const repo::Repository* rp = repo ? &*repo : nullptr;
  auto in_a = diff::load_diff_input(a, rp);
  if (!in_a) return trouble(in_a.error());
  auto in_b = diff::load_diff_input(b, rp);
  if (!in_b) return trouble(in_b.error());
  diff::DiffReport d = diff::diff(*in_a, *in_b);

  if (json) {
    std::string paths;
    for (const auto& p : d.paths)
      paths += fmt::format("{}{{\"path\": {}, \"status\": \"{}\", \"fields\": {}}}",
                           paths.empty() ? "" : ", ", json::string(p.path), status_word(p.status),
                           fields_json(p.fields));
    fmt::print("{{\"equal\": {}, \"image\": {}, \"paths\": [{}]}}\n", d.equal() ? "true" : "false",
               fields_json(d.image), paths);
    return d.equal() ? kExitOk : kExitDifferent;
  }
  for (const auto& f : d.image) fmt::print("image: {}: {} -> {}\n", f.field, f.a, f.b);
  for (const auto& p : d.paths) {
    if (p.status == diff::PathDiff::Status::kOnlyA) {
      fmt::print("- {}\n", p.path);
    } else if (p.status == diff::PathDiff::Status::kOnlyB) {
      fmt::print("+ {}\n", p.path);
    } else {
      fmt::print("~ {}\n", p.path);
      for (const auto& f : p.fields)
        fmt::print("    {}: {} -> {}\n", f.field, or_none(f.a), or_none(f.b));
    }
  }
  if (!d.image.empty() && d.paths.empty())
    fmt::print("(the trees are identical: only the images differ)\n");
  return d.equal() ? kExitOk : kExitDifferent;
}

}  // namespace

CFS_REGISTER_COMMAND("diff", "compare two images, dumps or repository images", run_diff);

}  // namespace cfs::tools
